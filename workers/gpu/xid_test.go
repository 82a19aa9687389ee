package gpu

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// fakeEvents is an NVML event set fed by the test.
type fakeEvents struct {
	set    *mock.EventSet
	events chan nvml.EventData
	errs   chan nvml.Return
	freed  atomic.Bool
}

func newFakeEvents() *fakeEvents {
	f := &fakeEvents{events: make(chan nvml.EventData, 8), errs: make(chan nvml.Return, 8)}
	f.set = &mock.EventSet{
		WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
			select {
			case e := <-f.events:
				return e, nvml.SUCCESS
			case r := <-f.errs:
				return nvml.EventData{}, r
			case <-time.After(time.Duration(ms) * time.Millisecond):
				return nvml.EventData{}, nvml.ERROR_TIMEOUT
			}
		},
		FreeFunc: func() nvml.Return { f.freed.Store(true); return nvml.SUCCESS },
	}
	return f
}

func TestXidErrors(t *testing.T) {
	srv, mocks := twoGPUs(t)
	ev := newFakeEvents()
	srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return ev.set, nvml.SUCCESS }
	var registered [2]atomic.Uint64
	for i, m := range mocks {
		m.dev.RegisterEventsFunc = func(types uint64, set nvml.EventSet) nvml.Return {
			if set != ev.set {
				t.Errorf("GPU %d registered with another event set", i)
			}
			registered[i].Store(types)
			return nvml.SUCCESS
		}
	}
	c, clock := newTestCollector(t, srv, CollectorOptions{})
	c.Start(context.Background())
	for i := range registered {
		if registered[i].Load() != nvml.EventTypeXidCriticalError {
			t.Fatalf("GPU %d registered events %#x, want Xid critical errors", i, registered[i].Load())
		}
	}

	steps := []struct {
		name     string
		send     []nvml.EventData
		waitErr  nvml.Return // an error from Wait before the events
		wantLast [2]float64
		wantErr  [2]string // err_code label
		wantAll  map[string]float64
	}{
		{name: "none yet", wantErr: [2]string{"0", "0"}, wantAll: map[string]float64{}},
		{
			name:     "Xid 79 on GPU 1",
			send:     []nvml.EventData{{Device: mocks[1].dev, EventType: nvml.EventTypeXidCriticalError, EventData: 79}},
			wantLast: [2]float64{0, 79}, wantErr: [2]string{"0", "79"},
			wantAll: map[string]float64{"gpu=1,xid=79": 1},
		},
		{
			// Wait failing once (a GPU fell off the bus) does not stop the watcher.
			name:    "Xid 48 twice on GPU 0, after a failed wait",
			waitErr: nvml.ERROR_GPU_IS_LOST,
			send: []nvml.EventData{
				{Device: mocks[0].dev, EventType: nvml.EventTypeXidCriticalError, EventData: 48},
				{Device: mocks[0].dev, EventType: nvml.EventTypeXidCriticalError, EventData: 48},
				{Device: mocks[0].dev, EventType: nvml.EventTypeSingleBitEccError, EventData: 5}, // not an Xid
				{Device: nil, EventType: nvml.EventTypeXidCriticalError, EventData: 13},          // no GPU named
			},
			wantLast: [2]float64{48, 79}, wantErr: [2]string{"48", "79"},
			wantAll: map[string]float64{"gpu=0,xid=48": 2, "gpu=1,xid=79": 1},
		},
		{
			name:     "Xid 13 on GPU 1 replaces 79 as the last one",
			send:     []nvml.EventData{{Device: mocks[1].dev, EventType: nvml.EventTypeXidCriticalError, EventData: 13}},
			wantLast: [2]float64{48, 13}, wantErr: [2]string{"48", "13"},
			wantAll: map[string]float64{"gpu=0,xid=48": 2, "gpu=1,xid=79": 1, "gpu=1,xid=13": 1},
		},
	}
	for _, s := range steps {
		if s.waitErr != nvml.SUCCESS {
			ev.errs <- s.waitErr
		}
		for _, e := range s.send {
			ev.events <- e
		}
		// The watcher runs on its own; wait until it has taken the events.
		deadline := time.Now().Add(10 * time.Second)
		var got map[string]map[string]float64
		for {
			clock.advance(3 * time.Second)
			got = scrape(t, c)
			if len(got["helix_gpu_xid_errors_total"]) == len(s.wantAll) && len(ev.events) == 0 && len(ev.errs) == 0 &&
				equalFloats(got["helix_gpu_xid_errors_total"], s.wantAll) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: helix_gpu_xid_errors_total %v, want %v", s.name, got["helix_gpu_xid_errors_total"], s.wantAll)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for i := range 2 {
			key := "err_code=" + s.wantErr[i] + ",gpu=" + string(rune('0'+i))
			if v, ok := got["DCGM_FI_DEV_XID_ERRORS"][key]; !ok || v != s.wantLast[i] {
				t.Errorf("%s: DCGM_FI_DEV_XID_ERRORS{%s} = %v (present %v), want %v; all: %v", s.name, key, v, ok, s.wantLast[i], got["DCGM_FI_DEV_XID_ERRORS"])
			}
		}
		if len(got["DCGM_FI_DEV_XID_ERRORS"]) != 2 {
			t.Errorf("%s: %d DCGM_FI_DEV_XID_ERRORS series, want one per GPU", s.name, len(got["DCGM_FI_DEV_XID_ERRORS"]))
		}
	}

	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the watcher")
	}
	if !ev.freed.Load() {
		t.Error("the event set was not freed")
	}
}

func TestXidUnavailable(t *testing.T) {
	tests := []struct {
		name     string
		create   nvml.Return
		register nvml.Return
	}{
		{"no event set", nvml.ERROR_NOT_SUPPORTED, nvml.SUCCESS},
		{"no GPU supports Xid events", nvml.SUCCESS, nvml.ERROR_NOT_SUPPORTED},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, mocks := twoGPUs(t)
			ev := newFakeEvents()
			srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return ev.set, tc.create }
			for _, m := range mocks {
				m.dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return tc.register }
			}
			c, _ := newTestCollector(t, srv, CollectorOptions{})
			c.Start(context.Background())
			c.Close()
			if tc.create == nvml.SUCCESS && !ev.freed.Load() {
				t.Error("the unused event set was not freed")
			}
			// Metrics still work, with Xid gauges at 0.
			got := scrape(t, c)
			if got["helix_gpu_up"]["gpu=1"] != 1 || len(got["DCGM_FI_DEV_XID_ERRORS"]) != 2 {
				t.Errorf("metrics without Xid events: up %v, xid %v", got["helix_gpu_up"], got["DCGM_FI_DEV_XID_ERRORS"])
			}
		})
	}
}

func equalFloats(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
