package gpu

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// telemetry is what a mock GPU reports; tests change it between scrapes.
type telemetry struct {
	smClock, memClock  uint32 // MHz
	gpuTemp, memTemp   uint32 // °C
	memTempRet         nvml.Return
	powerMW, limitMW   uint32
	energyMJ           uint64
	pcieTxKB, pcieRxKB uint32
	replay             int
	util               nvml.Utilization
	enc, dec           uint32
	mem                nvml.Memory_v2
	corrRows, uncRows  int
	remapFailed        bool
}

// mockGPU wires a go-nvml mock device to telemetry the test controls.
type mockGPU struct {
	dev *server.Device

	mu    sync.Mutex
	tel   telemetry
	lost  bool // every call fails with GPU_IS_LOST, as a GPU off the bus
	reads int  // GetUtilizationRates calls
	block chan struct{}
}

func (m *mockGPU) set(f func(*telemetry)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.tel)
}

func (m *mockGPU) setLost(lost bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lost = lost
}

func (m *mockGPU) readCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}

// get returns the telemetry and the return code of every call.
func (m *mockGPU) get() (telemetry, nvml.Return) {
	m.mu.Lock()
	t, lost := m.tel, m.lost
	m.mu.Unlock()
	if lost {
		return t, nvml.ERROR_GPU_IS_LOST
	}
	return t, nvml.SUCCESS
}

// wireTelemetry replaces srv's devices' telemetry calls with ones reading
// tels[i], gives them fixed UUIDs and PCI bus IDs, and returns them.
func wireTelemetry(srv *server.Server, tels ...telemetry) []*mockGPU {
	var out []*mockGPU
	for i, nd := range srv.Devices {
		d := nd.(*server.Device)
		d.UUID = fmt.Sprintf("GPU-%08x-0000-4000-8000-%012x", i, i)
		m := &mockGPU{dev: d}
		if i < len(tels) {
			m.tel = tels[i]
		}
		out = append(out, m)
		busID := fmt.Sprintf("00000000:%02X:00.0", 0x18+i)
		d.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
			var p nvml.PciInfo
			for j := range len(busID) {
				p.BusId[j] = int8(busID[j])
			}
			return p, nvml.SUCCESS
		}
		d.GetClockInfoFunc = func(c nvml.ClockType) (uint32, nvml.Return) {
			t, ret := m.get()
			if c == nvml.CLOCK_SM {
				m.mu.Lock()
				block := m.block
				m.mu.Unlock()
				if block != nil {
					<-block
				}
				return t.smClock, ret
			}
			return t.memClock, ret
		}
		d.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
			t, ret := m.get()
			return t.gpuTemp, ret
		}
		d.GetFieldValuesFunc = func(v []nvml.FieldValue) nvml.Return {
			t, ret := m.get()
			if ret != nvml.SUCCESS {
				return ret
			}
			for k := range v {
				if v[k].FieldId != nvml.FI_DEV_MEMORY_TEMP {
					v[k].NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
					continue
				}
				v[k].NvmlReturn = uint32(t.memTempRet)
				v[k].ValueType = uint32(nvml.VALUE_TYPE_UNSIGNED_INT)
				binary.NativeEndian.PutUint32(v[k].Value[:], t.memTemp)
			}
			return nvml.SUCCESS
		}
		d.GetPowerUsageFunc = func() (uint32, nvml.Return) {
			t, ret := m.get()
			return t.powerMW, ret
		}
		d.GetPowerManagementLimitFunc = func() (uint32, nvml.Return) {
			t, ret := m.get()
			return t.limitMW, ret
		}
		d.GetTotalEnergyConsumptionFunc = func() (uint64, nvml.Return) {
			t, ret := m.get()
			return t.energyMJ, ret
		}
		d.GetPcieThroughputFunc = func(c nvml.PcieUtilCounter) (uint32, nvml.Return) {
			t, ret := m.get()
			if c == nvml.PCIE_UTIL_TX_BYTES {
				return t.pcieTxKB, ret
			}
			return t.pcieRxKB, ret
		}
		d.GetPcieReplayCounterFunc = func() (int, nvml.Return) {
			t, ret := m.get()
			return t.replay, ret
		}
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			t, ret := m.get()
			m.mu.Lock()
			m.reads++
			m.mu.Unlock()
			return t.util, ret
		}
		d.GetEncoderUtilizationFunc = func() (uint32, uint32, nvml.Return) {
			t, ret := m.get()
			return t.enc, 167000, ret
		}
		d.GetDecoderUtilizationFunc = func() (uint32, uint32, nvml.Return) {
			t, ret := m.get()
			return t.dec, 167000, ret
		}
		d.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
			t, ret := m.get()
			return t.mem, ret
		}
		d.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
			t, ret := m.get()
			return nvml.Memory{Total: t.mem.Total, Free: t.mem.Free, Used: t.mem.Used + t.mem.Reserved}, ret
		}
		d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) {
			t, ret := m.get()
			return t.corrRows, t.uncRows, false, t.remapFailed, ret
		}
	}
	return out
}
