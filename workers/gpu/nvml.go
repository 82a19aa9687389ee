// Package gpu finds the machine's NVIDIA GPUs through NVML and exports their
// telemetry as Prometheus metrics, named as dcgm-exporter and Triton name
// them.
//
// NVML (libnvidia-ml.so.1) is loaded at run time by github.com/NVIDIA/go-nvml,
// so the worker builds and runs on machines without NVIDIA software: Open
// then returns ErrNoLibrary, and the worker serves on the CPU.
package gpu

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// DefaultLibrary is the NVML library loaded when Options.LibraryPath is
// empty; the dynamic loader searches its usual paths for it.
const DefaultLibrary = "libnvidia-ml.so.1"

var (
	// ErrNoLibrary means NVML could not be loaded: no NVIDIA driver here, or
	// a wrong --nvml-library path.
	ErrNoLibrary = errors.New("NVML library not found")
	// ErrInit means NVML loaded but did not start (driver not loaded, a
	// library/driver version mismatch, no permission).
	ErrInit = errors.New("NVML initialization failed")
	// ErrUnknownGPU means no GPU has the UUID asked for.
	ErrUnknownGPU = errors.New("no such GPU")
)

// Library is the part of NVML's API this package calls. The library that
// nvml.New returns satisfies it, and so do go-nvml's mock servers
// (pkg/nvml/mock/dgxh100, dgxh200), which is how tests run without a GPU.
type Library interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	Extensions() nvml.ExtendedInterface
	SystemGetDriverVersion() (string, nvml.Return)
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(int) (nvml.Device, nvml.Return)
	EventSetCreate() (nvml.EventSet, nvml.Return)
}

// Device is the part of nvml.Device this package calls.
type Device interface {
	GetUUID() (string, nvml.Return)
	GetName() (string, nvml.Return)
	GetMinorNumber() (int, nvml.Return)
	GetPciInfo() (nvml.PciInfo, nvml.Return)
	GetCudaComputeCapability() (int, int, nvml.Return)
	GetMigMode() (int, int, nvml.Return)
	GetMemoryInfo() (nvml.Memory, nvml.Return)
	GetMemoryInfo_v2() (nvml.Memory_v2, nvml.Return)
	GetUtilizationRates() (nvml.Utilization, nvml.Return)
	GetEncoderUtilization() (uint32, uint32, nvml.Return)
	GetDecoderUtilization() (uint32, uint32, nvml.Return)
	GetTemperature(nvml.TemperatureSensors) (uint32, nvml.Return)
	GetFieldValues([]nvml.FieldValue) nvml.Return
	GetPowerUsage() (uint32, nvml.Return)
	GetPowerManagementLimit() (uint32, nvml.Return)
	GetTotalEnergyConsumption() (uint64, nvml.Return)
	GetClockInfo(nvml.ClockType) (uint32, nvml.Return)
	GetPcieThroughput(nvml.PcieUtilCounter) (uint32, nvml.Return)
	GetPcieReplayCounter() (int, nvml.Return)
	GetRemappedRows() (int, int, bool, bool, nvml.Return)
	RegisterEvents(uint64, nvml.EventSet) nvml.Return
}

// Symbols newer than the oldest drivers NVML ships with. go-nvml binds
// symbols lazily, so calling one the installed driver lacks would abort the
// process; each is looked up once at Open and skipped when absent.
const (
	symMemoryInfoV2 = "nvmlDeviceGetMemoryInfo_v2"
	symTotalEnergy  = "nvmlDeviceGetTotalEnergyConsumption"
	symFieldValues  = "nvmlDeviceGetFieldValues"
	symRemappedRows = "nvmlDeviceGetRemappedRows"
	symReplay       = "nvmlDeviceGetPcieReplayCounter"
)

var optionalSymbols = []string{symMemoryInfoV2, symTotalEnergy, symFieldValues, symRemappedRows, symReplay}

// Options configure Open.
type Options struct {
	// LibraryPath is the NVML library to load; empty: DefaultLibrary.
	LibraryPath string
	// Library, when set, is used instead of loading LibraryPath (tests pass
	// go-nvml's mock servers).
	Library Library
	// Logger receives warnings about GPUs that cannot be read; nil means
	// slog.Default().
	Logger *slog.Logger
}

// NVML is an initialized NVML and the GPUs it found at Open. A nil *NVML
// stands for "no NVML": it has no GPUs, and its methods are safe to call.
// It is safe for concurrent use.
type NVML struct {
	lib     Library
	log     *slog.Logger
	driver  string
	symbols map[string]bool
	devs    []*device
}

// device is one GPU: its NVML handle and what does not change while the
// process runs.
type device struct {
	h    Device
	info GPU
}

// Open loads and initializes NVML and reads the identity of every GPU. A
// GPU that NVML lists but cannot be read (lost, or not visible to this
// container) is logged and left out, so it cannot hide the others. Close
// releases NVML.
func Open(opts Options) (*NVML, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	lib := opts.Library
	path := opts.LibraryPath
	if path == "" {
		path = DefaultLibrary
	}
	if lib == nil {
		lib = nvml.New(nvml.WithLibraryPath(path))
	}
	switch ret := lib.Init(); ret {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return nil, fmt.Errorf("%w: cannot load %s", ErrNoLibrary, path)
	default:
		return nil, fmt.Errorf("%w: nvmlInit: %w", ErrInit, ret)
	}
	n := &NVML{lib: lib, log: log, symbols: map[string]bool{}}
	for _, s := range optionalSymbols {
		n.symbols[s] = lib.Extensions().LookupSymbol(s) == nil
	}
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		n.driver = v
	}
	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		_ = lib.Shutdown()
		return nil, fmt.Errorf("%w: nvmlDeviceGetCount: %w", ErrInit, ret)
	}
	for i := range count {
		d, err := n.openDevice(i)
		if err != nil {
			log.Warn("GPU left out: NVML cannot read it", "gpu", i, "error", err)
			continue
		}
		n.devs = append(n.devs, d)
	}
	return n, nil
}

func (n *NVML) openDevice(index int) (*device, error) {
	h, ret := n.lib.DeviceGetHandleByIndex(index)
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvmlDeviceGetHandleByIndex: %w", ret)
	}
	info := GPU{Index: index}
	if info.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvmlDeviceGetUUID: %w", ret)
	}
	if info.Name, ret = h.GetName(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvmlDeviceGetName: %w", ret)
	}
	if info.ComputeMajor, info.ComputeMinor, ret = h.GetCudaComputeCapability(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvmlDeviceGetCudaComputeCapability: %w", ret)
	}
	// The bus ID and minor number only label metrics; a GPU without them
	// (some virtualized ones) is still usable.
	if pci, ret := h.GetPciInfo(); ret == nvml.SUCCESS {
		info.PCIBusID = cString(pci.BusId[:])
	}
	info.DeviceMinor = -1
	if m, ret := h.GetMinorNumber(); ret == nvml.SUCCESS {
		info.DeviceMinor = m
	}
	mem, ret := h.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvmlDeviceGetMemoryInfo: %w", ret)
	}
	info.MemoryTotal, info.MemoryFree = mem.Total, mem.Free
	info.MIG = migEnabled(h)
	return &device{h: h, info: info}, nil
}

// Close shuts NVML down. Stop every Collector that uses n first.
func (n *NVML) Close() error {
	if n == nil {
		return nil
	}
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvmlShutdown: %w", ret)
	}
	return nil
}

// DriverVersion is the NVIDIA driver's version, "" when unknown.
func (n *NVML) DriverVersion() string {
	if n == nil {
		return ""
	}
	return n.driver
}

func (n *NVML) has(symbol string) bool { return n.symbols[symbol] }

// cString converts a NUL-terminated C char array.
func cString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}
