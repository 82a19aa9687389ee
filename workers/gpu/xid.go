package gpu

import (
	"context"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Defaults of Collector.xidWait and xidRetry.
const (
	// xidWait bounds one wait for an NVML event, and so how long Close waits.
	xidWait = 500 * time.Millisecond
	// xidRetry is the pause after a failed wait.
	xidRetry = time.Second
)

// Start watches NVML's Xid critical error events (what DCGM_FI_DEV_XID_ERRORS
// reports) until ctx ends or Close is called. Without GPUs it does nothing.
func (c *Collector) Start(ctx context.Context) {
	if len(c.gpus) == 0 || c.cancel != nil {
		return
	}
	ctx, c.cancel = context.WithCancel(ctx)
	set, ret := c.nv.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		c.log.Warn("GPU Xid errors will not be reported: nvmlEventSetCreate failed", "error", ret.Error())
		return
	}
	registered := 0
	for _, g := range c.gpus {
		if ret := g.dev.h.RegisterEvents(nvml.EventTypeXidCriticalError, set); ret != nvml.SUCCESS {
			c.log.Warn("GPU Xid errors will not be reported for this GPU", "gpu", g.dev.info.Index, "uuid", g.dev.info.UUID, "error", ret.Error())
			continue
		}
		registered++
	}
	if registered == 0 {
		set.Free()
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer set.Free()
		c.watchXid(ctx, set)
	}()
}

// Close stops the Xid watcher and waits for it. Call it before NVML.Close.
func (c *Collector) Close() {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
}

func (c *Collector) watchXid(ctx context.Context, set nvml.EventSet) {
	failing := nvml.SUCCESS
	for ctx.Err() == nil {
		data, ret := set.Wait(uint32(c.xidWait / time.Millisecond))
		switch ret {
		case nvml.SUCCESS:
			failing = nvml.SUCCESS
			c.recordXid(data)
		case nvml.ERROR_TIMEOUT:
		default:
			// E.g. a GPU fell off the bus; keep watching the others, slowly.
			if ret != failing {
				c.log.Warn("waiting for GPU Xid events failed", "error", ret.Error())
				failing = ret
			}
			select {
			case <-ctx.Done():
			case <-time.After(c.xidRetry):
			}
		}
	}
}

func (c *Collector) recordXid(data nvml.EventData) {
	if data.EventType&nvml.EventTypeXidCriticalError == 0 || data.Device == nil {
		return
	}
	uuid, ret := data.Device.GetUUID()
	if ret != nvml.SUCCESS {
		c.log.Warn("GPU Xid error on a GPU NVML cannot name", "xid", data.EventData, "error", ret.Error())
		return
	}
	for _, g := range c.gpus {
		if g.dev.info.UUID != uuid {
			continue
		}
		g.mu.Lock()
		g.lastXid = data.EventData
		g.xids[data.EventData]++
		g.mu.Unlock()
		c.log.Error("GPU Xid error", "gpu", g.dev.info.Index, "uuid", uuid, "xid", data.EventData)
		return
	}
	c.log.Warn("GPU Xid error on an unknown GPU", "uuid", uuid, "xid", data.EventData)
}
