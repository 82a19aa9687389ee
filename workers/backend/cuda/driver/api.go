package driver

// #include <stdlib.h>
// #include <string.h>
// #include "shim.h"
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

var cudaSymbols = []string{
	"cuInit", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetName",
	"cuDeviceGetAttribute", "cuDeviceGetUuid_v2|cuDeviceGetUuid", "cuDeviceTotalMem_v2",
	"cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease_v2|cuDevicePrimaryCtxRelease", "cuCtxSetCurrent",
	"cuMemGetInfo_v2", "cuMemAlloc_v2", "cuMemFree_v2", "cuMemHostAlloc", "cuMemFreeHost",
	"cuMemcpyHtoD_v2", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2",
	"cuStreamCreate", "cuStreamDestroy_v2", "cuStreamSynchronize",
	"cuModuleLoadData", "cuModuleUnload", "cuModuleGetFunction", "cuLaunchKernel",
	"cuEventCreate", "cuEventRecord", "cuEventElapsedTime_v2|cuEventElapsedTime", "cuEventDestroy_v2",
	"cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphInstantiateWithFlags", "cuGraphLaunch",
	"cuGraphExecDestroy", "cuGraphDestroy", "cuGetErrorName", "cuGetErrorString",
}

var cublasSymbols = []string{
	"cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetMathMode",
	"cublasSetWorkspace_v2", "cublasGemmStridedBatchedEx", "cublasGetStatusString", "cublasGetVersion_v2",
}

var nvrtcSymbols = []string{
	"nvrtcVersion", "nvrtcCreateProgram", "nvrtcCompileProgram", "nvrtcGetProgramLogSize",
	"nvrtcGetProgramLog", "nvrtcGetCUBINSize", "nvrtcGetCUBIN", "nvrtcDestroyProgram", "nvrtcGetErrorString",
}

// ErrOutOfMemory is matched (errors.Is) by a device allocation that failed
// for want of memory.
var ErrOutOfMemory = errors.New("out of device memory")

// Error is a failed library call.
type Error struct {
	Lib  string // "CUDA", "cuBLAS" or "NVRTC"
	Call string
	Code int
	Name string
	Msg  string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s (%d)", e.Call, e.Name, e.Code)
	if e.Msg != "" && e.Msg != e.Name {
		s += ": " + e.Msg
	}
	return s
}

// Is makes errors.Is(err, ErrOutOfMemory) hold for CUDA_ERROR_OUT_OF_MEMORY
// and CUBLAS_STATUS_ALLOC_FAILED.
func (e *Error) Is(target error) bool {
	return target == ErrOutOfMemory && ((e.Lib == "CUDA" && e.Code == 2) || (e.Lib == "cuBLAS" && e.Code == 3))
}

func (l *Libs) cuErr(call string, rc C.int) error {
	if rc == 0 {
		return nil
	}
	e := &Error{Lib: "CUDA", Call: call, Code: int(rc), Name: "CUDA_ERROR"}
	var s *C.char
	if C.c_i_errstr(l.cu["cuGetErrorName"], rc, &s) == 0 && s != nil {
		e.Name = C.GoString(s)
	}
	if C.c_i_errstr(l.cu["cuGetErrorString"], rc, &s) == 0 && s != nil {
		e.Msg = C.GoString(s)
	}
	return e
}

func (l *Libs) blasErr(call string, rc C.int) error {
	if rc == 0 {
		return nil
	}
	if rc < 0 { // making the context current failed
		return l.cuErr("cuCtxSetCurrent", -rc)
	}
	e := &Error{Lib: "cuBLAS", Call: call, Code: int(rc), Name: "CUBLAS_STATUS"}
	if s := C.c_s_i(l.blas["cublasGetStatusString"], rc); s != nil {
		e.Name = C.GoString(s)
	}
	return e
}

func (l *Libs) rtcErr(call string, rc C.int) error {
	if rc == 0 {
		return nil
	}
	e := &Error{Lib: "NVRTC", Call: call, Code: int(rc), Name: "NVRTC_ERROR"}
	if s := C.c_s_i(l.rtc["nvrtcGetErrorString"], rc); s != nil {
		e.Name = C.GoString(s)
	}
	return e
}

var initOnce struct {
	sync.Mutex
	done bool
}

// Init initializes the driver (cuInit), once per process.
func (l *Libs) Init() error {
	initOnce.Lock()
	defer initOnce.Unlock()
	if initOnce.done {
		return nil
	}
	if err := l.cuErr("cuInit", C.c_i_u(l.cu["cuInit"], 0)); err != nil {
		return err
	}
	initOnce.done = true
	return nil
}

// DriverVersion is the CUDA version the driver supports (12040: 12.4).
func (l *Libs) DriverVersion() (int, error) {
	var v C.int
	err := l.cuErr("cuDriverGetVersion", C.c_i_pi(l.cu["cuDriverGetVersion"], &v))
	return int(v), err
}

// DeviceCount is the number of CUDA devices visible to the process.
func (l *Libs) DeviceCount() (int, error) {
	var n C.int
	err := l.cuErr("cuDeviceGetCount", C.c_i_pi(l.cu["cuDeviceGetCount"], &n))
	return int(n), err
}

// DeviceInfo describes a CUDA device.
type DeviceInfo struct {
	Ordinal      int
	Name         string
	UUID         string // as NVML writes it: "GPU-" and 8-4-4-4-12 hex digits
	Major, Minor int    // compute capability
	SMs          int
	TotalMemory  uint64
}

// Device attributes (CUdevice_attribute).
const (
	attrMultiprocessorCount = 16
	attrComputeMajor        = 75
	attrComputeMinor        = 76
)

// Device describes CUDA device ordinal.
func (l *Libs) Device(ordinal int) (DeviceInfo, error) {
	var dev C.int
	if err := l.cuErr("cuDeviceGet", C.c_i_pi_i(l.cu["cuDeviceGet"], &dev, C.int(ordinal))); err != nil {
		return DeviceInfo{}, err
	}
	info := DeviceInfo{Ordinal: ordinal}
	name := make([]byte, 256)
	if err := l.cuErr("cuDeviceGetName", C.c_i_name(l.cu["cuDeviceGetName"], (*C.char)(unsafe.Pointer(&name[0])), 255, dev)); err != nil {
		return DeviceInfo{}, err
	}
	info.Name = C.GoString((*C.char)(unsafe.Pointer(&name[0])))
	for attr, dst := range map[int]*int{attrComputeMajor: &info.Major, attrComputeMinor: &info.Minor, attrMultiprocessorCount: &info.SMs} {
		var v C.int
		if err := l.cuErr("cuDeviceGetAttribute", C.c_i_attr(l.cu["cuDeviceGetAttribute"], &v, C.int(attr), dev)); err != nil {
			return DeviceInfo{}, err
		}
		*dst = int(v)
	}
	uuid := make([]byte, 16)
	if err := l.cuErr("cuDeviceGetUuid", C.c_i_uuid(l.cu["cuDeviceGetUuid_v2"], unsafe.Pointer(&uuid[0]), dev)); err != nil {
		return DeviceInfo{}, err
	}
	info.UUID = FormatUUID(uuid)
	var total C.size_t
	if err := l.cuErr("cuDeviceTotalMem", C.c_i_totalmem(l.cu["cuDeviceTotalMem_v2"], &total, dev)); err != nil {
		return DeviceInfo{}, err
	}
	info.TotalMemory = uint64(total)
	return info, nil
}

// FormatUUID writes a device UUID as NVML does ("GPU-" + 8-4-4-4-12 hex).
func FormatUUID(b []byte) string {
	h := fmt.Sprintf("%x", b)
	if len(h) != 32 {
		return "GPU-" + h
	}
	return "GPU-" + strings.Join([]string{h[:8], h[8:12], h[12:16], h[16:20], h[20:]}, "-")
}

// Context is the primary context of one device.
type Context struct {
	l       *Libs
	ordinal int
	dev     C.int
	ctx     unsafe.Pointer
}

// Open retains the primary context of device ordinal.
func (l *Libs) Open(ordinal int) (*Context, error) {
	if err := l.Init(); err != nil {
		return nil, err
	}
	c := &Context{l: l, ordinal: ordinal}
	if err := l.cuErr("cuDeviceGet", C.c_i_pi_i(l.cu["cuDeviceGet"], &c.dev, C.int(ordinal))); err != nil {
		return nil, err
	}
	if err := l.cuErr("cuDevicePrimaryCtxRetain", C.c_i_ppv_i(l.cu["cuDevicePrimaryCtxRetain"], &c.ctx, c.dev)); err != nil {
		return nil, err
	}
	return c, nil
}

// do runs load-time calls with the context current on a locked thread.
func (c *Context) do(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.l.cuErr("cuCtxSetCurrent", C.c_i_pv(c.l.cu["cuCtxSetCurrent"], c.ctx)); err != nil {
		return err
	}
	return f()
}

// Close releases the primary context.
func (c *Context) Close() error {
	return c.l.cuErr("cuDevicePrimaryCtxRelease", C.c_i_i(c.l.cu["cuDevicePrimaryCtxRelease_v2"], c.dev))
}

// MemInfo is the device's free and total memory.
func (c *Context) MemInfo() (free, total uint64, err error) {
	var f, t C.size_t
	err = c.do(func() error {
		return c.l.cuErr("cuMemGetInfo", C.c_i_memgetinfo(c.l.cu["cuMemGetInfo_v2"], &f, &t))
	})
	return uint64(f), uint64(t), err
}

// Alloc allocates device memory.
func (c *Context) Alloc(bytes int64) (uint64, error) {
	var p C.ulonglong
	err := c.do(func() error {
		return c.l.cuErr(fmt.Sprintf("cuMemAlloc(%d bytes)", bytes), C.c_i_alloc(c.l.cu["cuMemAlloc_v2"], &p, C.size_t(bytes)))
	})
	return uint64(p), err
}

// Free releases device memory.
func (c *Context) Free(p uint64) error {
	return c.do(func() error { return c.l.cuErr("cuMemFree", C.c_i_ull(c.l.cu["cuMemFree_v2"], C.ulonglong(p))) })
}

// HostAlloc allocates page-locked host memory.
func (c *Context) HostAlloc(bytes int64) ([]byte, error) {
	var p unsafe.Pointer
	err := c.do(func() error {
		return c.l.cuErr(fmt.Sprintf("cuMemHostAlloc(%d bytes)", bytes), C.c_i_hostalloc(c.l.cu["cuMemHostAlloc"], &p, C.size_t(bytes), 0))
	})
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), bytes), nil
}

// HostFree releases memory from HostAlloc.
func (c *Context) HostFree(b []byte) error {
	return c.do(func() error {
		return c.l.cuErr("cuMemFreeHost", C.c_i_pv(c.l.cu["cuMemFreeHost"], unsafe.Pointer(&b[0])))
	})
}

// Upload copies host memory to the device and waits.
func (c *Context) Upload(dst uint64, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	return c.do(func() error {
		return c.l.cuErr("cuMemcpyHtoD", C.c_i_htod(c.l.cu["cuMemcpyHtoD_v2"], C.ulonglong(dst), unsafe.Pointer(&src[0]), C.size_t(len(src))))
	})
}

// Module is a loaded CUDA module.
type Module struct {
	c   *Context
	mod unsafe.Pointer
}

// Function is a kernel of a module.
type Function struct{ fn unsafe.Pointer }

// LoadModule loads a CUBIN or PTX image.
func (c *Context) LoadModule(image []byte) (*Module, error) {
	m := &Module{c: c}
	cimg := C.CBytes(image)
	defer C.free(cimg)
	err := c.do(func() error {
		return c.l.cuErr("cuModuleLoadData", C.c_i_modload(c.l.cu["cuModuleLoadData"], &m.mod, cimg))
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Function finds a kernel by name.
func (m *Module) Function(name string) (Function, error) {
	var f unsafe.Pointer
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	err := m.c.do(func() error {
		return m.c.l.cuErr("cuModuleGetFunction("+name+")", C.c_i_getfn(m.c.l.cu["cuModuleGetFunction"], &f, m.mod, cname))
	})
	return Function{fn: f}, err
}

// Unload unloads the module.
func (m *Module) Unload() error {
	return m.c.do(func() error { return m.c.l.cuErr("cuModuleUnload", C.c_i_pv(m.c.l.cu["cuModuleUnload"], m.mod)) })
}

// Stream is a CUDA stream; its calls make the context current themselves.
type Stream struct {
	c *Context
	s unsafe.Pointer
}

// NewStream creates a stream that does not synchronize with the legacy
// default stream.
func (c *Context) NewStream() (*Stream, error) {
	s := &Stream{c: c}
	err := c.do(func() error { return c.l.cuErr("cuStreamCreate", C.c_i_ppv_u(c.l.cu["cuStreamCreate"], &s.s, 1)) })
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Destroy destroys the stream.
func (s *Stream) Destroy() error {
	return s.c.do(func() error { return s.c.l.cuErr("cuStreamDestroy", C.c_i_pv(s.c.l.cu["cuStreamDestroy_v2"], s.s)) })
}

func (s *Stream) setCurrent() unsafe.Pointer { return s.c.l.cu["cuCtxSetCurrent"] }

// Params are a launch's parameters in C memory: the array of pointers
// cuLaunchKernel takes, followed by the values they point at.
type Params struct{ mem unsafe.Pointer }

// NewParams copies each parameter's bytes into C memory.
func NewParams(params [][]byte) *Params {
	size := 8 * len(params)
	for _, p := range params {
		size += (len(p) + 7) / 8 * 8
	}
	mem := C.malloc(C.size_t(max(size, 8)))
	ptrs := unsafe.Slice((*unsafe.Pointer)(mem), len(params))
	at := unsafe.Add(mem, 8*len(params))
	for i, p := range params {
		ptrs[i] = at
		if len(p) > 0 {
			C.memcpy(at, unsafe.Pointer(&p[0]), C.size_t(len(p)))
		}
		at = unsafe.Add(at, (len(p)+7)/8*8)
	}
	return &Params{mem: mem}
}

// Free releases the parameters.
func (p *Params) Free() {
	if p.mem != nil {
		C.free(p.mem)
		p.mem = nil
	}
}

// Launch queues a kernel.
func (s *Stream) Launch(f Function, grid, block [3]uint32, p *Params) error {
	return s.c.l.cuErr("cuLaunchKernel", C.c_launch(s.setCurrent(), s.c.ctx, s.c.l.cu["cuLaunchKernel"], f.fn,
		C.uint(grid[0]), C.uint(grid[1]), C.uint(grid[2]), C.uint(block[0]), C.uint(block[1]), C.uint(block[2]),
		s.s, (*unsafe.Pointer)(p.mem)))
}

// CopyToDevice queues a copy from page-locked host memory.
func (s *Stream) CopyToDevice(dst uint64, src []byte) error {
	return s.c.l.cuErr("cuMemcpyHtoDAsync", C.c_htod_async(s.setCurrent(), s.c.ctx, s.c.l.cu["cuMemcpyHtoDAsync_v2"],
		C.ulonglong(dst), unsafe.Pointer(&src[0]), C.size_t(len(src)), s.s))
}

// CopyToHost queues a copy into page-locked host memory.
func (s *Stream) CopyToHost(dst []byte, src uint64) error {
	return s.c.l.cuErr("cuMemcpyDtoHAsync", C.c_dtoh_async(s.setCurrent(), s.c.ctx, s.c.l.cu["cuMemcpyDtoHAsync_v2"],
		unsafe.Pointer(&dst[0]), C.ulonglong(src), C.size_t(len(dst)), s.s))
}

// Sync waits for the stream's work; a kernel fault surfaces here.
func (s *Stream) Sync() error {
	return s.c.l.cuErr("cuStreamSynchronize", C.c_with_ctx_pv(s.setCurrent(), s.c.ctx, s.c.l.cu["cuStreamSynchronize"], s.s))
}

// Graph is an instantiated CUDA graph.
type Graph struct {
	c    *Context
	exec unsafe.Pointer
	g    unsafe.Pointer
}

// captureModeThreadLocal keeps other threads' CUDA calls out of a capture.
const captureModeThreadLocal = 1

// BeginCapture starts recording the stream's work into a graph. Capture
// and EndCapture must run on the same OS thread: the caller locks it.
func (s *Stream) BeginCapture() error {
	if err := s.c.l.cuErr("cuCtxSetCurrent", C.c_i_pv(s.c.l.cu["cuCtxSetCurrent"], s.c.ctx)); err != nil {
		return err
	}
	return s.c.l.cuErr("cuStreamBeginCapture", C.c_i_pv_i(s.c.l.cu["cuStreamBeginCapture_v2"], s.s, captureModeThreadLocal))
}

// EndCapture stops recording and instantiates the graph.
func (s *Stream) EndCapture() (*Graph, error) {
	g := &Graph{c: s.c}
	if err := s.c.l.cuErr("cuStreamEndCapture", C.c_i_pv_ppv(s.c.l.cu["cuStreamEndCapture"], s.s, &g.g)); err != nil {
		return nil, err
	}
	if err := s.c.l.cuErr("cuGraphInstantiateWithFlags", C.c_i_instantiate(s.c.l.cu["cuGraphInstantiateWithFlags"], &g.exec, g.g, 0)); err != nil {
		_ = s.c.l.cuErr("cuGraphDestroy", C.c_i_pv(s.c.l.cu["cuGraphDestroy"], g.g))
		return nil, err
	}
	return g, nil
}

// LaunchGraph queues a graph.
func (s *Stream) LaunchGraph(g *Graph) error {
	return s.c.l.cuErr("cuGraphLaunch", C.c_with_ctx_pv_pv(s.setCurrent(), s.c.ctx, s.c.l.cu["cuGraphLaunch"], g.exec, s.s))
}

// Destroy releases the graph.
func (g *Graph) Destroy() error {
	return g.c.do(func() error {
		return errors.Join(g.c.l.cuErr("cuGraphExecDestroy", C.c_i_pv(g.c.l.cu["cuGraphExecDestroy"], g.exec)),
			g.c.l.cuErr("cuGraphDestroy", C.c_i_pv(g.c.l.cu["cuGraphDestroy"], g.g)))
	})
}

// Event is a CUDA event (with timing).
type Event struct {
	c  *Context
	ev unsafe.Pointer
}

// NewEvent creates a timing event.
func (c *Context) NewEvent() (*Event, error) {
	e := &Event{c: c}
	err := c.do(func() error { return c.l.cuErr("cuEventCreate", C.c_i_ppv_u(c.l.cu["cuEventCreate"], &e.ev, 0)) })
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Record queues the event on the stream.
func (s *Stream) Record(e *Event) error {
	return s.c.l.cuErr("cuEventRecord", C.c_with_ctx_pv_pv(s.setCurrent(), s.c.ctx, s.c.l.cu["cuEventRecord"], e.ev, s.s))
}

// Elapsed is the milliseconds between two recorded, completed events.
func (c *Context) Elapsed(start, end *Event) (float64, error) {
	var ms C.float
	err := c.do(func() error {
		return c.l.cuErr("cuEventElapsedTime", C.c_i_elapsed(c.l.cu["cuEventElapsedTime_v2"], &ms, start.ev, end.ev))
	})
	return float64(ms), err
}

// Destroy destroys the event.
func (e *Event) Destroy() error {
	return e.c.do(func() error { return e.c.l.cuErr("cuEventDestroy", C.c_i_pv(e.c.l.cu["cuEventDestroy_v2"], e.ev)) })
}
