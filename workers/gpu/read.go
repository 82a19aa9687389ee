package gpu

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// field is one value read from a GPU, in the unit dcgm-exporter exports it
// in unless said otherwise.
type field int

const (
	fSMClock            field = iota // MHz
	fMemClock                        // MHz
	fMemoryTemp                      // °C
	fGPUTemp                         // °C
	fPower                           // W
	fEnergy                          // mJ since the driver loaded
	fPCIeTx                          // KB/s (NVML samples 20 ms)
	fPCIeRx                          // KB/s
	fPCIeReplay                      // retries
	fGPUUtil                         // %
	fMemCopyUtil                     // %
	fEncUtil                         // %
	fDecUtil                         // %
	fFBFree                          // MiB
	fFBUsed                          // MiB
	fFBReserved                      // MiB
	fRemapUncorrectable              // rows
	fRemapCorrectable                // rows
	fRemapFailure                    // 0 or 1
	fMemTotalBytes                   // bytes (Triton)
	fMemUsedBytes                    // bytes (Triton)
	fPowerLimit                      // W (Triton)
	numFields
)

// reading is what one pass over a GPU's NVML calls returned.
type reading struct {
	at   time.Time // when the pass started
	v    [numFields]float64
	have [numFields]bool
	// errs holds the calls that did not succeed, by NVML function name.
	errs map[string]nvml.Return
}

func (r *reading) set(f field, v float64) {
	r.v[f] = v
	r.have[f] = true
}

// answered reports whether the GPU gave any value at all: a lost GPU fails
// every call, a healthy one may lack a few (NOT_SUPPORTED).
func (r *reading) answered() bool {
	for _, h := range r.have {
		if h {
			return true
		}
	}
	return false
}

// read calls NVML for every value of one GPU. A call that fails leaves its
// value out; the others are still read.
func (n *NVML) read(d *device, at time.Time) reading {
	r := reading{at: at, errs: map[string]nvml.Return{}}
	ok := func(call string, ret nvml.Return) bool {
		if ret != nvml.SUCCESS {
			r.errs[call] = ret
			return false
		}
		return true
	}
	h := d.h

	if v, ret := h.GetClockInfo(nvml.CLOCK_SM); ok("nvmlDeviceGetClockInfo(SM)", ret) {
		r.set(fSMClock, float64(v))
	}
	if v, ret := h.GetClockInfo(nvml.CLOCK_MEM); ok("nvmlDeviceGetClockInfo(MEM)", ret) {
		r.set(fMemClock, float64(v))
	}
	if v, ret := h.GetTemperature(nvml.TEMPERATURE_GPU); ok("nvmlDeviceGetTemperature", ret) {
		r.set(fGPUTemp, float64(v))
	}
	if n.has(symFieldValues) {
		// HBM temperature has no call of its own; DCGM reads this field too.
		fv := []nvml.FieldValue{{FieldId: nvml.FI_DEV_MEMORY_TEMP}}
		if ok("nvmlDeviceGetFieldValues", h.GetFieldValues(fv)) {
			if v, good := fieldValue(fv[0]); good {
				r.set(fMemoryTemp, v)
			} else {
				r.errs["nvmlDeviceGetFieldValues(MEMORY_TEMP)"] = nvml.Return(fv[0].NvmlReturn)
			}
		}
	}
	if v, ret := h.GetPowerUsage(); ok("nvmlDeviceGetPowerUsage", ret) {
		r.set(fPower, float64(v)/1000)
	}
	if v, ret := h.GetPowerManagementLimit(); ok("nvmlDeviceGetPowerManagementLimit", ret) {
		r.set(fPowerLimit, float64(v)/1000)
	}
	if n.has(symTotalEnergy) {
		if v, ret := h.GetTotalEnergyConsumption(); ok("nvmlDeviceGetTotalEnergyConsumption", ret) {
			r.set(fEnergy, float64(v))
		}
	}
	if v, ret := h.GetPcieThroughput(nvml.PCIE_UTIL_TX_BYTES); ok("nvmlDeviceGetPcieThroughput(TX)", ret) {
		r.set(fPCIeTx, float64(v))
	}
	if v, ret := h.GetPcieThroughput(nvml.PCIE_UTIL_RX_BYTES); ok("nvmlDeviceGetPcieThroughput(RX)", ret) {
		r.set(fPCIeRx, float64(v))
	}
	if n.has(symReplay) {
		if v, ret := h.GetPcieReplayCounter(); ok("nvmlDeviceGetPcieReplayCounter", ret) {
			r.set(fPCIeReplay, float64(v))
		}
	}
	if u, ret := h.GetUtilizationRates(); ok("nvmlDeviceGetUtilizationRates", ret) {
		r.set(fGPUUtil, float64(u.Gpu))
		r.set(fMemCopyUtil, float64(u.Memory))
	}
	if v, _, ret := h.GetEncoderUtilization(); ok("nvmlDeviceGetEncoderUtilization", ret) {
		r.set(fEncUtil, float64(v))
	}
	if v, _, ret := h.GetDecoderUtilization(); ok("nvmlDeviceGetDecoderUtilization", ret) {
		r.set(fDecUtil, float64(v))
	}
	n.readMemory(h, &r, ok)
	if n.has(symRemappedRows) {
		if corr, unc, _, failed, ret := h.GetRemappedRows(); ok("nvmlDeviceGetRemappedRows", ret) {
			r.set(fRemapCorrectable, float64(corr))
			r.set(fRemapUncorrectable, float64(unc))
			r.set(fRemapFailure, b2f(failed))
		}
	}
	return r
}

// readMemory prefers the v2 call, whose "used" leaves out the memory the
// driver reserves (as DCGM's FB_USED does) and which reports that reserve.
func (n *NVML) readMemory(h Device, r *reading, ok func(string, nvml.Return) bool) {
	const mib = 1 << 20
	if n.has(symMemoryInfoV2) {
		m, ret := h.GetMemoryInfo_v2()
		if ret == nvml.SUCCESS {
			r.set(fFBFree, float64(m.Free/mib))
			r.set(fFBUsed, float64(m.Used/mib))
			r.set(fFBReserved, float64(m.Reserved/mib))
			r.set(fMemTotalBytes, float64(m.Total))
			r.set(fMemUsedBytes, float64(m.Used))
			return
		}
		if ret != nvml.ERROR_NOT_SUPPORTED && ret != nvml.ERROR_FUNCTION_NOT_FOUND {
			ok("nvmlDeviceGetMemoryInfo_v2", ret)
			return
		}
	}
	if m, ret := h.GetMemoryInfo(); ok("nvmlDeviceGetMemoryInfo", ret) {
		r.set(fFBFree, float64(m.Free/mib))
		r.set(fFBUsed, float64(m.Used/mib))
		r.set(fMemTotalBytes, float64(m.Total))
		r.set(fMemUsedBytes, float64(m.Used))
	}
}

// fieldValue decodes an nvmlFieldValue_t's union (host byte order).
func fieldValue(f nvml.FieldValue) (float64, bool) {
	if nvml.Return(f.NvmlReturn) != nvml.SUCCESS {
		return 0, false
	}
	b := f.Value[:]
	e := binary.NativeEndian
	switch nvml.ValueType(f.ValueType) {
	case nvml.VALUE_TYPE_DOUBLE:
		return math.Float64frombits(e.Uint64(b)), true
	case nvml.VALUE_TYPE_UNSIGNED_INT:
		return float64(e.Uint32(b)), true
	case nvml.VALUE_TYPE_UNSIGNED_LONG, nvml.VALUE_TYPE_UNSIGNED_LONG_LONG:
		return float64(e.Uint64(b)), true
	case nvml.VALUE_TYPE_SIGNED_LONG_LONG:
		return float64(int64(e.Uint64(b))), true
	case nvml.VALUE_TYPE_SIGNED_INT:
		return float64(int32(e.Uint32(b))), true
	case nvml.VALUE_TYPE_UNSIGNED_SHORT:
		return float64(e.Uint16(b)), true
	}
	return 0, false
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
