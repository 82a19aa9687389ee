package gpu

import (
	"context"
	"errors"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// GPU describes one GPU as NVML sees it.
//
// Index is NVML's index, which orders GPUs by PCI bus ID. CUDA orders them
// fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, and CUDA_VISIBLE_DEVICES
// renumbers them, so match a CUDA device to a GPU by UUID
// (cuDeviceGetUuid; NVML writes it "GPU-" + the 16 bytes as 8-4-4-4-12 hex)
// or by PCIBusID (cuDeviceGetPCIBusId), never by index.
type GPU struct {
	Index       int    // NVML index; the "gpu" label of the metrics
	DeviceMinor int    // N of /dev/nvidiaN; -1 when unknown
	UUID        string // "GPU-8-4-4-4-12"
	Name        string // e.g. "NVIDIA H100 80GB HBM3"; the "modelName" label
	PCIBusID    string // "00000000:18:00.0"; "" when unknown

	ComputeMajor, ComputeMinor int // CUDA compute capability, e.g. 9, 0

	MemoryTotal uint64 // bytes of device memory
	MemoryFree  uint64 // bytes free when read
	MIG         bool   // MIG mode is on (the whole GPU is not one CUDA device)
}

// GPUs returns the GPUs found at Open, without calling NVML: MemoryFree and
// MIG are as they were then. A nil *NVML has none.
func (n *NVML) GPUs() []GPU {
	if n == nil {
		return nil
	}
	out := make([]GPU, len(n.devs))
	for i, d := range n.devs {
		out[i] = d.info
	}
	return out
}

// Devices reads the GPUs' free memory and MIG mode now. It returns every GPU
// it could read and, alongside, an error naming each one it could not (a
// lost GPU), so a caller can place work on the healthy ones. NVML calls
// cannot be interrupted; when ctx ends first, Devices returns ctx's error
// and the reads finish in the background.
func (n *NVML) Devices(ctx context.Context) ([]GPU, error) {
	if n == nil {
		return nil, nil
	}
	type result struct {
		gpus []GPU
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var (
			gpus []GPU
			errs []error
		)
		for _, d := range n.devs {
			g := d.info
			mem, ret := d.h.GetMemoryInfo()
			if ret != nvml.SUCCESS {
				errs = append(errs, fmt.Errorf("gpu %d (%s): nvmlDeviceGetMemoryInfo: %w", g.Index, g.UUID, ret))
				continue
			}
			g.MemoryTotal, g.MemoryFree = mem.Total, mem.Free
			g.MIG = migEnabled(d.h)
			gpus = append(gpus, g)
		}
		done <- result{gpus, errors.Join(errs...)}
	}()
	select {
	case r := <-done:
		return r.gpus, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("reading GPUs: %w", ctx.Err())
	}
}

// ByUUID returns the GPU with this UUID as found at Open, or ErrUnknownGPU.
func (n *NVML) ByUUID(uuid string) (GPU, error) {
	for _, g := range n.GPUs() {
		if g.UUID == uuid {
			return g, nil
		}
	}
	return GPU{}, fmt.Errorf("%w: %q", ErrUnknownGPU, uuid)
}

// migEnabled reports the current MIG mode; GPUs without MIG say
// NOT_SUPPORTED, which means off.
func migEnabled(h Device) bool {
	current, _, ret := h.GetMigMode()
	return ret == nvml.SUCCESS && current == nvml.DEVICE_MIG_ENABLE
}
