package gpu

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// The label sets of the two mock GPUs, sorted by name as the text format
// comparison wants them.
const (
	l0 = `DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="node-a",UUID="GPU-00000000-0000-4000-8000-000000000000",device="nvidia0",gpu="0",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:18:00.0"`
	l1 = `DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="node-a",UUID="GPU-00000001-0000-4000-8000-000000000001",device="nvidia1",gpu="1",modelName="NVIDIA H200 141GB HBM3e",pci_bus_id="00000000:19:00.0"`
	x0 = `DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="node-a",UUID="GPU-00000000-0000-4000-8000-000000000000",device="nvidia0",err_code="0",gpu="0",modelName="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:18:00.0"`
	x1 = `DCGM_FI_DRIVER_VERSION="550.54.15",Hostname="node-a",UUID="GPU-00000001-0000-4000-8000-000000000001",device="nvidia1",err_code="0",gpu="1",modelName="NVIDIA H200 141GB HBM3e",pci_bus_id="00000000:19:00.0"`
	u0 = `gpu_uuid="GPU-00000000-0000-4000-8000-000000000000"`
	u1 = `gpu_uuid="GPU-00000001-0000-4000-8000-000000000001"`
)

// expand fills in the label sets of the expected exposition texts.
var expand = strings.NewReplacer("{L0}", l0, "{L1}", l1, "{X0}", x0, "{X1}", x1, "{U0}", u0, "{U1}", u1).Replace

var (
	h100Telemetry = telemetry{
		smClock: 1980, memClock: 2619, gpuTemp: 41, memTemp: 38, memTempRet: nvml.SUCCESS,
		powerMW: 123456, limitMW: 700000, energyMJ: 987654321,
		pcieTxKB: 1234, pcieRxKB: 5678, replay: 3,
		util: nvml.Utilization{Gpu: 87, Memory: 45},
		// 512 MiB reserved, 10 GiB + 5 bytes used: MiB values truncate.
		mem:      nvml.Memory_v2{Total: 81920 << 20, Reserved: 512 << 20, Used: 10<<30 + 5, Free: 81920<<20 - 512<<20 - (10<<30 + 5)},
		corrRows: 2,
	}
	h200Telemetry = telemetry{
		smClock: 1755, memClock: 3201, gpuTemp: 55, memTempRet: nvml.ERROR_NOT_SUPPORTED,
		powerMW: 250000, limitMW: 700000, energyMJ: 42,
		mem:     nvml.Memory_v2{Total: 144384 << 20, Reserved: 592 << 20, Free: 144384<<20 - 592<<20},
		uncRows: 1, remapFailed: true,
	}
)

// fullExposition is every metric of the two mock GPUs on a first scrape.
const fullExposition = `
# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{{L0}} 1980
DCGM_FI_DEV_SM_CLOCK{{L1}} 1755
# HELP DCGM_FI_DEV_MEM_CLOCK Memory clock frequency (in MHz).
# TYPE DCGM_FI_DEV_MEM_CLOCK gauge
DCGM_FI_DEV_MEM_CLOCK{{L0}} 2619
DCGM_FI_DEV_MEM_CLOCK{{L1}} 3201
# HELP DCGM_FI_DEV_MEMORY_TEMP Memory temperature (in C).
# TYPE DCGM_FI_DEV_MEMORY_TEMP gauge
DCGM_FI_DEV_MEMORY_TEMP{{L0}} 38
# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{{L0}} 41
DCGM_FI_DEV_GPU_TEMP{{L1}} 55
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{{L0}} 123.456
DCGM_FI_DEV_POWER_USAGE{{L1}} 250
# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{L0}} 987654321
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{L1}} 42
# HELP DCGM_FI_DEV_PCIE_TX_THROUGHPUT Total number of bytes transmitted through PCIe TX (in KB) via NVML.
# TYPE DCGM_FI_DEV_PCIE_TX_THROUGHPUT counter
DCGM_FI_DEV_PCIE_TX_THROUGHPUT{{L0}} 1234
DCGM_FI_DEV_PCIE_TX_THROUGHPUT{{L1}} 0
# HELP DCGM_FI_DEV_PCIE_RX_THROUGHPUT Total number of bytes received through PCIe RX (in KB) via NVML.
# TYPE DCGM_FI_DEV_PCIE_RX_THROUGHPUT counter
DCGM_FI_DEV_PCIE_RX_THROUGHPUT{{L0}} 5678
DCGM_FI_DEV_PCIE_RX_THROUGHPUT{{L1}} 0
# HELP DCGM_FI_DEV_PCIE_REPLAY_COUNTER Total number of PCIe retries.
# TYPE DCGM_FI_DEV_PCIE_REPLAY_COUNTER counter
DCGM_FI_DEV_PCIE_REPLAY_COUNTER{{L0}} 3
DCGM_FI_DEV_PCIE_REPLAY_COUNTER{{L1}} 0
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{{L0}} 87
DCGM_FI_DEV_GPU_UTIL{{L1}} 0
# HELP DCGM_FI_DEV_MEM_COPY_UTIL Memory utilization (in %).
# TYPE DCGM_FI_DEV_MEM_COPY_UTIL gauge
DCGM_FI_DEV_MEM_COPY_UTIL{{L0}} 45
DCGM_FI_DEV_MEM_COPY_UTIL{{L1}} 0
# HELP DCGM_FI_DEV_ENC_UTIL Encoder utilization (in %).
# TYPE DCGM_FI_DEV_ENC_UTIL gauge
DCGM_FI_DEV_ENC_UTIL{{L0}} 0
DCGM_FI_DEV_ENC_UTIL{{L1}} 0
# HELP DCGM_FI_DEV_DEC_UTIL Decoder utilization (in %).
# TYPE DCGM_FI_DEV_DEC_UTIL gauge
DCGM_FI_DEV_DEC_UTIL{{L0}} 0
DCGM_FI_DEV_DEC_UTIL{{L1}} 0
# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{{L0}} 71167
DCGM_FI_DEV_FB_FREE{{L1}} 143792
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{{L0}} 10240
DCGM_FI_DEV_FB_USED{{L1}} 0
# HELP DCGM_FI_DEV_FB_RESERVED Framebuffer memory reserved (in MiB).
# TYPE DCGM_FI_DEV_FB_RESERVED gauge
DCGM_FI_DEV_FB_RESERVED{{L0}} 512
DCGM_FI_DEV_FB_RESERVED{{L1}} 592
# HELP DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS Number of remapped rows for uncorrectable errors
# TYPE DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS counter
DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS{{L0}} 0
DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS{{L1}} 1
# HELP DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS Number of remapped rows for correctable errors
# TYPE DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS counter
DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS{{L0}} 2
DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS{{L1}} 0
# HELP DCGM_FI_DEV_ROW_REMAP_FAILURE Whether remapping of rows has failed
# TYPE DCGM_FI_DEV_ROW_REMAP_FAILURE gauge
DCGM_FI_DEV_ROW_REMAP_FAILURE{{L0}} 0
DCGM_FI_DEV_ROW_REMAP_FAILURE{{L1}} 1
# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.
# TYPE DCGM_FI_DEV_XID_ERRORS gauge
DCGM_FI_DEV_XID_ERRORS{{X0}} 0
DCGM_FI_DEV_XID_ERRORS{{X1}} 0
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{{U0}} 0.87
nv_gpu_utilization{{U1}} 0
# HELP nv_gpu_memory_total_bytes GPU total memory, in bytes
# TYPE nv_gpu_memory_total_bytes gauge
nv_gpu_memory_total_bytes{{U0}} 85899345920
nv_gpu_memory_total_bytes{{U1}} 151397597184
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{{U0}} 10737418245
nv_gpu_memory_used_bytes{{U1}} 0
# HELP nv_gpu_power_usage GPU power usage in watts
# TYPE nv_gpu_power_usage gauge
nv_gpu_power_usage{{U0}} 123.456
nv_gpu_power_usage{{U1}} 250
# HELP nv_gpu_power_limit GPU power management limit in watts
# TYPE nv_gpu_power_limit gauge
nv_gpu_power_limit{{U0}} 700
nv_gpu_power_limit{{U1}} 700
# HELP nv_energy_consumption GPU energy consumption in joules since the Triton Server started
# TYPE nv_energy_consumption counter
nv_energy_consumption{{U0}} 0
nv_energy_consumption{{U1}} 0
# HELP helix_gpu_count Number of GPUs NVML reports on this worker (0 without an NVIDIA driver).
# TYPE helix_gpu_count gauge
helix_gpu_count 2
# HELP helix_gpu_up 1 if the GPU answered the last NVML read in time, else 0.
# TYPE helix_gpu_up gauge
helix_gpu_up{{L0}} 1
helix_gpu_up{{L1}} 1
`

// fakeClock is the Collector's clock in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// twoGPUs is an H100 and an H200 with the telemetry above.
func twoGPUs(t *testing.T) (*server.Server, []*mockGPU) {
	t.Helper()
	srv := dgxh100.NewWithGPUs(gpus.H100_SXM5_80GB, gpus.H200_SXM5_141GB)
	return srv, wireTelemetry(srv, h100Telemetry, h200Telemetry)
}

func newTestCollector(t *testing.T, srv *server.Server, opts CollectorOptions) (*Collector, *fakeClock) {
	t.Helper()
	nv, err := Open(Options{Library: srv, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nv.Close() })
	if opts.Hostname == "" {
		opts.Hostname = "node-a"
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	c := NewCollector(nv, opts)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	c.now = clock.now
	c.xidWait, c.xidRetry = 20*time.Millisecond, 20*time.Millisecond
	t.Cleanup(c.Close)
	return c, clock
}

func TestCollectorExposition(t *testing.T) {
	tests := []struct {
		name  string
		setup func([]*mockGPU)
		want  string
	}{
		{
			name: "every metric of both GPUs",
			want: fullExposition,
		},
		{
			// A GPU that fails every call (off the bus) is reported down and
			// the other still exports everything.
			name:  "lost GPU does not hide the other",
			setup: func(m []*mockGPU) { m[0].setLost(true) },
			want:  withGPU0Lost(fullExposition),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, mocks := twoGPUs(t)
			c, _ := newTestCollector(t, srv, CollectorOptions{})
			if tc.setup != nil {
				tc.setup(mocks) // after Open, which leaves out GPUs it cannot read
			}
			if err := testutil.CollectAndCompare(c, strings.NewReader(expand(tc.want))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// withGPU0Lost turns the exposition into GPU 0 being lost: only its Xid
// gauge ({X0}) stays, and helix_gpu_up says 0.
func withGPU0Lost(s string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		switch {
		case strings.Contains(line, "{U0}"), strings.Contains(line, "{L0}") && !strings.HasPrefix(line, "helix_gpu_up"):
			continue
		case strings.HasPrefix(line, "helix_gpu_up{{L0}}"):
			line = strings.TrimSuffix(line, " 1") + " 0"
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func TestCollectorNoNVML(t *testing.T) {
	c := NewCollector(nil, CollectorOptions{Logger: discardLogger()})
	c.Start(context.Background()) // no GPUs: nothing to watch
	c.Close()
	want := `
# HELP helix_gpu_count Number of GPUs NVML reports on this worker (0 without an NVIDIA driver).
# TYPE helix_gpu_count gauge
helix_gpu_count 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// scrape collects c once and returns its samples as name -> labels -> value.
func scrape(t *testing.T, c prometheus.Collector) map[string]map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, f := range fams {
		out[f.GetName()] = map[string]float64{}
		for _, m := range f.GetMetric() {
			out[f.GetName()][labelString(m)] = value(m)
		}
	}
	return out
}

func labelString(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		if l.GetName() == "gpu" || l.GetName() == "gpu_uuid" || l.GetName() == "xid" || l.GetName() == "err_code" {
			parts = append(parts, l.GetName()+"="+l.GetValue())
		}
	}
	return strings.Join(parts, ",")
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

func TestCollectorReadsOncePerInterval(t *testing.T) {
	srv, mocks := twoGPUs(t)
	c, clock := newTestCollector(t, srv, CollectorOptions{Interval: 2 * time.Second})
	steps := []struct {
		advance time.Duration
		util    uint32
		reads   int     // GetUtilizationRates calls on GPU 0 so far
		want    float64 // DCGM_FI_DEV_GPU_UTIL of GPU 0
	}{
		{0, 87, 1, 87},
		{time.Second, 10, 1, 87},             // within the interval: the cached reading
		{1500 * time.Millisecond, 10, 2, 10}, // 2.5 s after the first read: read again
		{0, 55, 2, 10},
	}
	for i, s := range steps {
		clock.advance(s.advance)
		mocks[0].set(func(t *telemetry) { t.util.Gpu = s.util })
		got := scrape(t, c)["DCGM_FI_DEV_GPU_UTIL"]["gpu=0"]
		if got != s.want || mocks[0].readCount() != s.reads {
			t.Errorf("step %d: util %v after %d reads, want %v after %d", i, got, mocks[0].readCount(), s.want, s.reads)
		}
	}
}

func TestCollectorTritonEnergyCountsFromStart(t *testing.T) {
	srv, mocks := twoGPUs(t)
	c, clock := newTestCollector(t, srv, CollectorOptions{})
	steps := []struct {
		energyMJ uint64
		want     float64 // nv_energy_consumption of GPU 0, J
	}{
		{987654321, 0},
		{987659321, 5},
		{987660321, 6},
		{1000, 0}, // the driver reloaded: the count starts again (a counter reset)
		{3500, 2.5},
	}
	for i, s := range steps {
		mocks[0].set(func(t *telemetry) { t.energyMJ = s.energyMJ })
		got := scrape(t, c)
		if e := got["nv_energy_consumption"][`gpu_uuid=`+mocks[0].dev.UUID]; e != s.want {
			t.Errorf("step %d: nv_energy_consumption %v, want %v", i, e, s.want)
		}
		if e := got["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]["gpu=0"]; e != float64(s.energyMJ) {
			t.Errorf("step %d: DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION %v, want %v", i, e, s.energyMJ)
		}
		clock.advance(3 * time.Second)
	}
}

func TestCollectorHungGPUDoesNotStallScrape(t *testing.T) {
	srv, mocks := twoGPUs(t)
	release := make(chan struct{})
	mocks[1].mu.Lock()
	mocks[1].block = release
	mocks[1].mu.Unlock()
	c, clock := newTestCollector(t, srv, CollectorOptions{Timeout: 100 * time.Millisecond})
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
	})

	for i := range 2 {
		done := make(chan map[string]map[string]float64, 1)
		go func() { done <- scrape(t, c) }()
		select {
		case got := <-done:
			if got["helix_gpu_up"]["gpu=0"] != 1 || got["helix_gpu_up"]["gpu=1"] != 0 {
				t.Fatalf("scrape %d: helix_gpu_up %v, want gpu 0 up and the hung gpu 1 down", i, got["helix_gpu_up"])
			}
			if _, ok := got["DCGM_FI_DEV_SM_CLOCK"]["gpu=1"]; ok {
				t.Fatalf("scrape %d: the hung GPU exported DCGM_FI_DEV_SM_CLOCK", i)
			}
			if got["DCGM_FI_DEV_SM_CLOCK"]["gpu=0"] != 1980 {
				t.Fatalf("scrape %d: GPU 0 DCGM_FI_DEV_SM_CLOCK %v, want 1980", i, got["DCGM_FI_DEV_SM_CLOCK"]["gpu=0"])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("scrape %d blocked on the hung GPU", i)
		}
		clock.advance(3 * time.Second)
	}

	// Once NVML answers again, the GPU is back on the next scrape.
	close(release)
	released = true
	deadline := time.Now().Add(10 * time.Second)
	for {
		clock.advance(3 * time.Second)
		if scrape(t, c)["helix_gpu_up"]["gpu=1"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the GPU stayed down after NVML answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
