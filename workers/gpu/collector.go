package gpu

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
)

// dcgmLabels are dcgm-exporter's labels on every per-GPU series (its
// releases up to 4.5.x; "gpu" is the index, "device" is "nvidia"+index).
var dcgmLabels = []string{"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"}

// metricDef is one exported metric: its name, type and help exactly as the
// exporter it imitates writes them.
type metricDef struct {
	name, help string
	typ        prometheus.ValueType
	from       field
}

// dcgmDefs follow dcgm-exporter's etc/default-counters.csv. PCIe throughput
// left its defaults in 4.x (DCGM_FI_PROF_PCIE_* need DCGM's profiling
// module); it is exported as its 3.x defaults declared it.
var dcgmDefs = []metricDef{
	{"DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", prometheus.GaugeValue, fSMClock},
	{"DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", prometheus.GaugeValue, fMemClock},
	{"DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).", prometheus.GaugeValue, fMemoryTemp},
	{"DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", prometheus.GaugeValue, fGPUTemp},
	{"DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", prometheus.GaugeValue, fPower},
	{"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).", prometheus.CounterValue, fEnergy},
	{"DCGM_FI_DEV_PCIE_TX_THROUGHPUT", "Total number of bytes transmitted through PCIe TX (in KB) via NVML.", prometheus.CounterValue, fPCIeTx},
	{"DCGM_FI_DEV_PCIE_RX_THROUGHPUT", "Total number of bytes received through PCIe RX (in KB) via NVML.", prometheus.CounterValue, fPCIeRx},
	{"DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries.", prometheus.CounterValue, fPCIeReplay},
	{"DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", prometheus.GaugeValue, fGPUUtil},
	{"DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", prometheus.GaugeValue, fMemCopyUtil},
	{"DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).", prometheus.GaugeValue, fEncUtil},
	{"DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).", prometheus.GaugeValue, fDecUtil},
	{"DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", prometheus.GaugeValue, fFBFree},
	{"DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", prometheus.GaugeValue, fFBUsed},
	{"DCGM_FI_DEV_FB_RESERVED", "Framebuffer memory reserved (in MiB).", prometheus.GaugeValue, fFBReserved},
	{"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for uncorrectable errors", prometheus.CounterValue, fRemapUncorrectable},
	{"DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for correctable errors", prometheus.CounterValue, fRemapCorrectable},
	{"DCGM_FI_DEV_ROW_REMAP_FAILURE", "Whether remapping of rows has failed", prometheus.GaugeValue, fRemapFailure},
}

// tritonDefs are Triton's GPU metrics (label gpu_uuid), with Triton's help.
// nv_energy_consumption is computed from fEnergy, not listed here.
var tritonDefs = []metricDef{
	{"nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)", prometheus.GaugeValue, fGPUUtil},
	{"nv_gpu_memory_total_bytes", "GPU total memory, in bytes", prometheus.GaugeValue, fMemTotalBytes},
	{"nv_gpu_memory_used_bytes", "GPU used memory, in bytes", prometheus.GaugeValue, fMemUsedBytes},
	{"nv_gpu_power_usage", "GPU power usage in watts", prometheus.GaugeValue, fPower},
	{"nv_gpu_power_limit", "GPU power management limit in watts", prometheus.GaugeValue, fPowerLimit},
}

// Defaults of CollectorOptions.
const (
	DefaultInterval = 2 * time.Second // Triton's --metrics-interval-ms default
	DefaultTimeout  = time.Second
)

// CollectorOptions configure a Collector.
type CollectorOptions struct {
	// Interval: a scrape re-reads a GPU whose last reading is older than
	// this; scrapes closer together share one reading. 0: DefaultInterval.
	Interval time.Duration
	// Timeout: how long a scrape waits for NVML before it answers without
	// the GPUs that have not replied. 0: DefaultTimeout; at most Interval.
	Timeout time.Duration
	// Hostname is the Hostname label; empty: $NODE_NAME, else the host name
	// (as dcgm-exporter).
	Hostname string
	// Logger: nil means slog.Default().
	Logger *slog.Logger
}

// Collector is a prometheus.Collector of the GPUs' telemetry. It reads NVML
// when scraped (no background polling), at most once per Interval per GPU,
// and never holds a scrape longer than Timeout: a GPU that has not answered
// by then is reported down (helix_gpu_up 0) and its other series are left
// out. Start adds Xid error events.
type Collector struct {
	nv       *NVML
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger
	now      func() time.Time

	xidWait, xidRetry time.Duration

	gpus []*gpuState

	dcgm   []*prometheus.Desc // parallel to dcgmDefs
	triton []*prometheus.Desc // parallel to tritonDefs

	energy, xid, count, up, xidTotal *prometheus.Desc

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// gpuState is one GPU's readings and events.
type gpuState struct {
	dev    *device
	labels []string // values of dcgmLabels

	mu       sync.Mutex
	last     *reading
	inflight chan struct{} // closed when the running read ends; nil if none
	since    time.Time     // when the running read started

	energyBase float64 // first energy reading, mJ (Triton counts from start)
	haveBase   bool
	logged     map[string]nvml.Return // call errors already logged

	lastXid uint64
	xids    map[uint64]float64
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector of nv's GPUs. A nil nv (no NVML) exports
// only helix_gpu_count 0.
func NewCollector(nv *NVML, opts CollectorOptions) *Collector {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	// A reading a scrape waited for must still count as this interval's.
	opts.Timeout = min(opts.Timeout, opts.Interval)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Hostname == "" {
		opts.Hostname = hostname()
	}
	c := &Collector{
		nv:       nv,
		interval: opts.Interval,
		timeout:  opts.Timeout,
		log:      opts.Logger,
		now:      time.Now,
		xidWait:  xidWait,
		xidRetry: xidRetry,
	}
	for _, d := range dcgmDefs {
		c.dcgm = append(c.dcgm, prometheus.NewDesc(d.name, d.help, dcgmLabels, nil))
	}
	for _, d := range tritonDefs {
		c.triton = append(c.triton, prometheus.NewDesc(d.name, d.help, []string{"gpu_uuid"}, nil))
	}
	c.energy = prometheus.NewDesc("nv_energy_consumption", "GPU energy consumption in joules since the Triton Server started", []string{"gpu_uuid"}, nil)
	c.xid = prometheus.NewDesc("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", append(append([]string{}, dcgmLabels...), "err_code"), nil)
	c.count = prometheus.NewDesc("helix_gpu_count", "Number of GPUs NVML reports on this worker (0 without an NVIDIA driver).", nil, nil)
	c.up = prometheus.NewDesc("helix_gpu_up", "1 if the GPU answered the last NVML read in time, else 0.", dcgmLabels, nil)
	c.xidTotal = prometheus.NewDesc("helix_gpu_xid_errors_total", "Xid critical errors NVML reported since the worker started, by Xid.", append(append([]string{}, dcgmLabels...), "xid"), nil)

	if nv != nil {
		for _, d := range nv.devs {
			g := d.info
			labels := []string{
				strconv.Itoa(g.Index), g.UUID, g.PCIBusID, "nvidia" + strconv.Itoa(g.Index),
				g.Name, opts.Hostname, nv.driver,
			}
			for i, l := range labels {
				// Label values must be UTF-8, or building a metric fails.
				labels[i] = strings.ToValidUTF8(l, "?")
			}
			c.gpus = append(c.gpus, &gpuState{
				dev:    d,
				labels: labels,
				logged: map[string]nvml.Return{},
				xids:   map[uint64]float64{},
			})
		}
	}
	return c
}

// Describe sends every metric's descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.dcgm {
		ch <- d
	}
	for _, d := range c.triton {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{c.energy, c.xid, c.count, c.up, c.xidTotal} {
		ch <- d
	}
}

// Collect reads the GPUs (see Collector) and sends their metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(len(c.gpus)))
	start := c.now()
	var waits []<-chan struct{}
	for _, g := range c.gpus {
		if w := c.refresh(g, start); w != nil {
			waits = append(waits, w)
		}
	}
	if len(waits) > 0 {
		timer := time.NewTimer(c.timeout)
		defer timer.Stop()
	wait:
		for _, w := range waits {
			select {
			case <-w:
			case <-timer.C:
				break wait
			}
		}
	}
	for _, g := range c.gpus {
		c.emit(ch, g, start)
	}
}

// refresh starts a read of g unless its last one is recent or one is
// running, and returns what to wait on: nil when there is nothing to wait
// for, or a read has been running longer than Timeout (a hung GPU would
// otherwise cost every scrape a full Timeout).
func (c *Collector) refresh(g *gpuState, now time.Time) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.last != nil && now.Sub(g.last.at) < c.interval {
		return nil
	}
	if g.inflight != nil {
		if now.Sub(g.since) > c.timeout {
			return nil
		}
		return g.inflight
	}
	done := make(chan struct{})
	g.inflight, g.since = done, now
	go func() {
		r := c.nv.read(g.dev, now)
		g.mu.Lock()
		g.last, g.inflight = &r, nil
		c.logCalls(g, &r)
		g.mu.Unlock()
		close(done)
	}()
	return done
}

// emit sends g's series from its last reading, if that reading belongs to
// this scrape's interval; Xid series come from events and are always sent.
func (c *Collector) emit(ch chan<- prometheus.Metric, g *gpuState, start time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.last
	fresh := r != nil && start.Sub(r.at) < c.interval && r.answered()
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, b2f(fresh), g.labels...)
	ch <- prometheus.MustNewConstMetric(c.xid, prometheus.GaugeValue, float64(g.lastXid),
		append(append([]string{}, g.labels...), strconv.FormatUint(g.lastXid, 10))...)
	for xid, n := range g.xids {
		ch <- prometheus.MustNewConstMetric(c.xidTotal, prometheus.CounterValue, n,
			append(append([]string{}, g.labels...), strconv.FormatUint(xid, 10))...)
	}
	if !fresh {
		return
	}
	for i, d := range dcgmDefs {
		if r.have[d.from] {
			ch <- prometheus.MustNewConstMetric(c.dcgm[i], d.typ, r.v[d.from], g.labels...)
		}
	}
	uuid := g.labels[1] // the UUID label, made valid UTF-8
	for i, d := range tritonDefs {
		if !r.have[d.from] {
			continue
		}
		v := r.v[d.from]
		if d.from == fGPUUtil {
			v /= 100
		}
		ch <- prometheus.MustNewConstMetric(c.triton[i], d.typ, v, uuid)
	}
	if r.have[fEnergy] {
		// Triton counts joules from its own start; a lower reading (driver
		// reloaded) starts the count again, which Prometheus sees as a reset.
		if !g.haveBase || r.v[fEnergy] < g.energyBase {
			g.energyBase, g.haveBase = r.v[fEnergy], true
		}
		ch <- prometheus.MustNewConstMetric(c.energy, prometheus.CounterValue, (r.v[fEnergy]-g.energyBase)/1000, uuid)
	}
}

// logCalls logs each NVML call whose result changed since the last read:
// once when it starts failing, once when it recovers. Calls the GPU does not
// support are expected (Debug); other failures are not (Warn).
func (c *Collector) logCalls(g *gpuState, r *reading) {
	info := g.dev.info
	for call, ret := range r.errs {
		if g.logged[call] == ret {
			continue
		}
		g.logged[call] = ret
		level := slog.LevelWarn
		if ret == nvml.ERROR_NOT_SUPPORTED || ret == nvml.ERROR_FUNCTION_NOT_FOUND {
			level = slog.LevelDebug
		}
		c.log.Log(context.Background(), level, "GPU metric unavailable", "gpu", info.Index, "uuid", info.UUID, "call", call, "error", ret.Error())
	}
	for call, ret := range g.logged {
		if _, failing := r.errs[call]; !failing {
			delete(g.logged, call)
			if ret != nvml.ERROR_NOT_SUPPORTED && ret != nvml.ERROR_FUNCTION_NOT_FOUND {
				c.log.Info("GPU metric available again", "gpu", info.Index, "uuid", info.UUID, "call", call)
			}
		}
	}
}

// hostname is dcgm-exporter's Hostname label: $NODE_NAME (set in
// Kubernetes from the node's name), else the host name.
func hostname() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}
