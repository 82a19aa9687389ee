package gpu

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestOpenWithoutNVML(t *testing.T) {
	// A path that cannot exist: the same code path as a machine with no
	// NVIDIA driver, whatever this machine has.
	nv, err := Open(Options{LibraryPath: t.TempDir() + "/libnvidia-ml.so.1", Logger: discardLogger()})
	if !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("Open: %v, want ErrNoLibrary", err)
	}
	if nv != nil {
		t.Fatalf("Open returned an NVML with its error")
	}
	// A nil *NVML is "no GPUs", safe to use.
	if g := nv.GPUs(); g != nil {
		t.Errorf("GPUs() = %v, want none", g)
	}
	if g, err := nv.Devices(context.Background()); g != nil || err != nil {
		t.Errorf("Devices() = %v, %v, want none", g, err)
	}
	if _, err := nv.ByUUID("GPU-x"); !errors.Is(err, ErrUnknownGPU) {
		t.Errorf("ByUUID: %v, want ErrUnknownGPU", err)
	}
	if nv.DriverVersion() != "" || nv.Close() != nil {
		t.Error("nil NVML: want no driver version and a nil Close")
	}
}

func TestOpenInitFails(t *testing.T) {
	tests := []struct {
		name   string
		init   nvml.Return
		count  nvml.Return
		wantIs error
	}{
		{"driver not loaded", nvml.ERROR_DRIVER_NOT_LOADED, nvml.SUCCESS, nvml.ERROR_DRIVER_NOT_LOADED},
		{"no permission", nvml.ERROR_NO_PERMISSION, nvml.SUCCESS, nvml.ERROR_NO_PERMISSION},
		{"device count fails", nvml.SUCCESS, nvml.ERROR_UNKNOWN, nvml.ERROR_UNKNOWN},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := dgxh100.New()
			srv.InitFunc = func() nvml.Return { return tc.init }
			shutdown := false
			srv.ShutdownFunc = func() nvml.Return { shutdown = true; return nvml.SUCCESS }
			srv.DeviceGetCountFunc = func() (int, nvml.Return) { return 8, tc.count }
			nv, err := Open(Options{Library: srv})
			if !errors.Is(err, ErrInit) || !errors.Is(err, tc.wantIs) || nv != nil {
				t.Fatalf("Open = %v, %v; want ErrInit wrapping %v", nv, err, tc.wantIs)
			}
			if tc.init == nvml.SUCCESS && !shutdown {
				t.Error("NVML was initialized but not shut down after the failure")
			}
		})
	}
}

func TestDiscovery(t *testing.T) {
	tests := []struct {
		name      string
		srv       *server.Server
		wantName  string
		wantTotal uint64
	}{
		{"DGX H100", dgxh100.New(), "NVIDIA H100 80GB HBM3", 81920 << 20},
		{"DGX H200", dgxh200.New(), "NVIDIA H200 141GB HBM3e", 144384 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, d := range tc.srv.Devices {
				d.(*server.Device).MemoryInfo.Free = uint64(i+1) << 30
			}
			nv, err := Open(Options{Library: tc.srv, Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = nv.Close() })
			if nv.DriverVersion() != "550.54.15" {
				t.Errorf("driver %q, want 550.54.15", nv.DriverVersion())
			}
			got := nv.GPUs()
			if len(got) != 8 {
				t.Fatalf("%d GPUs, want 8", len(got))
			}
			for i, g := range got {
				want := GPU{
					Index: i, DeviceMinor: i, UUID: tc.srv.Devices[i].(*server.Device).UUID, Name: tc.wantName,
					ComputeMajor: 9, ComputeMinor: 0, MemoryTotal: tc.wantTotal, MemoryFree: uint64(i+1) << 30,
				}
				if g != want {
					t.Errorf("GPU %d:\n got %+v\nwant %+v", i, g, want)
				}
				if !strings.HasPrefix(g.UUID, "GPU-") {
					t.Errorf("GPU %d: UUID %q", i, g.UUID)
				}
				if b, err := nv.ByUUID(g.UUID); err != nil || b != g {
					t.Errorf("ByUUID(%s) = %+v, %v", g.UUID, b, err)
				}
			}

			// Devices reads free memory and MIG mode now.
			dev3 := tc.srv.Devices[3].(*server.Device)
			dev3.MemoryInfo.Free = 7 << 30
			dev3.SetMigMode(nvml.DEVICE_MIG_ENABLE)
			now, err := nv.Devices(context.Background())
			if err != nil || len(now) != 8 {
				t.Fatalf("Devices: %d GPUs, %v", len(now), err)
			}
			if now[3].MemoryFree != 7<<30 || !now[3].MIG || now[2].MIG {
				t.Errorf("Devices: GPU 3 free %d MIG %v, GPU 2 MIG %v; want 7 GiB, true, false", now[3].MemoryFree, now[3].MIG, now[2].MIG)
			}
			if got[3].MemoryFree != 4<<30 {
				t.Errorf("GPUs() changed after Devices: %d", got[3].MemoryFree)
			}
		})
	}
}

func TestDiscoveryLeavesOutBrokenGPUs(t *testing.T) {
	srv := dgxh100.New()
	handle := srv.DeviceGetHandleByIndexFunc
	srv.DeviceGetHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i == 2 {
			return nil, nvml.ERROR_NO_PERMISSION // not in this container
		}
		return handle(i)
	}
	srv.Devices[5].(*server.Device).GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
	srv.Devices[6].(*server.Device).GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) { return nvml.PciInfo{}, nvml.ERROR_NOT_SUPPORTED }
	nv, err := Open(Options{Library: srv, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var idx []int
	for _, g := range nv.GPUs() {
		idx = append(idx, g.Index)
	}
	if want := []int{0, 1, 3, 4, 6, 7}; !equalInts(idx, want) {
		t.Errorf("GPUs %v, want %v", idx, want)
	}

	// A GPU lost after Open is named in Devices' error; the rest are listed.
	srv.Devices[4].(*server.Device).GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_GPU_IS_LOST }
	got, err := nv.Devices(context.Background())
	if !errors.Is(err, nvml.ERROR_GPU_IS_LOST) || !strings.Contains(err.Error(), "gpu 4") {
		t.Errorf("Devices error %v, want GPU_IS_LOST naming gpu 4", err)
	}
	idx = idx[:0]
	for _, g := range got {
		idx = append(idx, g.Index)
	}
	if want := []int{0, 1, 3, 6, 7}; !equalInts(idx, want) {
		t.Errorf("Devices %v, want %v", idx, want)
	}
}

func TestDevicesHonoursContext(t *testing.T) {
	srv := dgxh100.New()
	nv, err := Open(Options{Library: srv, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv.Devices[0].(*server.Device).GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		<-release
		return nvml.Memory{}, nvml.SUCCESS
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := nv.Devices(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Devices on a hung GPU: %v, want the context's deadline", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRealNVML runs against this machine's NVIDIA driver. Without one it
// checks that Open fails cleanly and skips the rest; HELIX_REQUIRE_GPU=1
// (the GPU check bundle) makes a missing GPU a failure.
func TestRealNVML(t *testing.T) {
	nv, err := Open(Options{Logger: discardLogger()})
	if err != nil {
		if !errors.Is(err, ErrNoLibrary) && !errors.Is(err, ErrInit) {
			t.Fatalf("Open: %v, want ErrNoLibrary or ErrInit", err)
		}
		if os.Getenv("HELIX_REQUIRE_GPU") == "1" {
			t.Fatalf("HELIX_REQUIRE_GPU=1 but NVML is unavailable: %v", err)
		}
		t.Skipf("no NVIDIA GPU here (%v); the rest needs one", err)
	}
	t.Cleanup(func() { _ = nv.Close() })
	gs, err := nv.Devices(context.Background())
	if err != nil || len(gs) == 0 {
		t.Fatalf("Devices: %d GPUs, %v", len(gs), err)
	}
	for _, g := range gs {
		t.Logf("GPU %d: %s %s sm_%d%d bus %s memory %d MiB (%d free) MIG %v, driver %s",
			g.Index, g.UUID, g.Name, g.ComputeMajor, g.ComputeMinor, g.PCIBusID, g.MemoryTotal>>20, g.MemoryFree>>20, g.MIG, nv.DriverVersion())
		if !strings.HasPrefix(g.UUID, "GPU-") || g.Name == "" || g.MemoryTotal == 0 || g.ComputeMajor == 0 || g.PCIBusID == "" {
			t.Errorf("GPU %d: incomplete %+v", g.Index, g)
		}
	}
	c := NewCollector(nv, CollectorOptions{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c.Start(context.Background())
	t.Cleanup(c.Close)
	got := scrape(t, c)
	for name, series := range got {
		for labels, v := range series {
			t.Logf("%s{%s} %v", name, labels, v)
		}
	}
	// What every datacenter GPU reports; the GPU check bundle relies on these.
	for _, name := range []string{
		"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP",
		"DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_XID_ERRORS",
		"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "nv_gpu_utilization", "nv_gpu_memory_total_bytes",
		"nv_gpu_memory_used_bytes", "nv_gpu_power_usage", "nv_gpu_power_limit", "nv_energy_consumption",
	} {
		if len(got[name]) != len(gs) {
			t.Errorf("%s: %d series, want one per GPU (%d)", name, len(got[name]), len(gs))
		}
	}
	for _, g := range gs {
		if got["helix_gpu_up"]["gpu="+strconv.Itoa(g.Index)] != 1 {
			t.Errorf("GPU %d: helix_gpu_up not 1", g.Index)
		}
		if total := got["nv_gpu_memory_total_bytes"]["gpu_uuid="+g.UUID]; total != float64(g.MemoryTotal) {
			t.Errorf("GPU %d: nv_gpu_memory_total_bytes %v, NVML says %d", g.Index, total, g.MemoryTotal)
		}
	}
}
