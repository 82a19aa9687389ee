// Package cpusim is a test device for the cuda backend: it compiles the
// generated CUDA C kernels as C++ with g++ against an emulation of the CUDA
// built-ins (hxsim.h), loads them with dlopen and runs them on the CPU, one
// fiber per GPU thread where a kernel synchronizes. GEMMs follow cuBLAS's
// column-major definition. It proves that the kernels compile as C++ and
// compute what the ONNX operators define; it proves nothing about NVRTC,
// the driver, or timing.
package cpusim

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

typedef void (*hxsim_tramp)(void**);
typedef int (*hxsim_launch_fn)(hxsim_tramp, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, int, void**);
typedef void (*hxsim_gemm_fn)(int, int, long long, long long, long long, float, unsigned long long, long long,
                              long long, unsigned long long, long long, long long, float, unsigned long long,
                              long long, long long, long long, int);

static int call_launch(void* launch, void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                       unsigned bz, int sync, void** params) {
	return ((hxsim_launch_fn)launch)((hxsim_tramp)fn, gx, gy, gz, bx, by, bz, sync, params);
}

static void call_gemm(void* f, int ta, int tb, long long m, long long n, long long k, float alpha,
                      unsigned long long A, long long lda, long long sA, unsigned long long B, long long ldb,
                      long long sB, float beta, unsigned long long C, long long ldc, long long sC, long long batch,
                      int type) {
	((hxsim_gemm_fn)f)(ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch, type);
}

static void* hx_alloc(size_t n) { return aligned_alloc(256, (n + 255) / 256 * 256); }
static void hx_free_addr(unsigned long long p) { free((void*)p); }
static void hx_to_addr(unsigned long long dst, const void* src, size_t n) { memcpy((void*)dst, src, n); }
static void hx_from_addr(void* dst, unsigned long long src, size_t n) { memcpy(dst, (const void*)src, n); }
*/
import "C"

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	cudaexec "github.com/helixflow/helixflow/workers/backend/cuda/exec"
	"github.com/helixflow/helixflow/workers/backend/cuda/kernels"
)

//go:embed hxsim.h
var header []byte

//go:embed runtime.cc
var runtimeSource []byte

// ErrNoCompiler is returned when g++ is not installed.
var ErrNoCompiler = errors.New("g++ not found")

// Device runs kernels on the CPU.
type Device struct {
	dir   string
	mods  []*module
	host  map[*byte]unsafe.Pointer
	freed map[cudaexec.Ptr]bool
}

var _ cudaexec.Device = (*Device)(nil)

// New returns a Device that builds modules in dir (a test's temp dir).
func New(dir string) (*Device, error) {
	if _, err := exec.LookPath("g++"); err != nil {
		return nil, ErrNoCompiler
	}
	return &Device{dir: dir, host: map[*byte]unsafe.Pointer{}, freed: map[cudaexec.Ptr]bool{}}, nil
}

type module struct {
	handle unsafe.Pointer
	launch unsafe.Pointer
	gemm   unsafe.Pointer
	fns    map[string]unsafe.Pointer
	sync   map[string]bool
}

// Build compiles a module's source with g++ (as the tests run it) and
// returns the shared object's path, or the compiler's messages.
func Build(dir, source string) (string, error) {
	f, err := os.CreateTemp(dir, "module-*.cc")
	if err != nil {
		return "", err
	}
	base := strings.TrimSuffix(f.Name(), ".cc")
	if _, err := f.WriteString(source); err != nil {
		f.Close()
		return "", err
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "hxsim.h"), header, 0o644); err != nil {
		return "", err
	}
	rt := filepath.Join(dir, "hxsim_runtime.cc")
	if err := os.WriteFile(rt, runtimeSource, 0o644); err != nil {
		return "", err
	}
	so := base + ".so"
	cmd := exec.Command("g++", "-std=c++17", "-O0", "-fPIC", "-shared", "-DHELIX_SIM", "-Wall", "-Werror",
		"-Wno-unused-variable", "-Wno-unused-function", "-I", dir, "-o", so, f.Name(), rt)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("g++: %v\n%s", err, out)
	}
	return so, nil
}

// Compile builds the source and loads it.
func (d *Device) Compile(source string, names []string) (cudaexec.Module, error) {
	so, err := Build(d.dir, source)
	if err != nil {
		return nil, err
	}
	cpath := C.CString(so)
	defer C.free(unsafe.Pointer(cpath))
	h := C.dlopen(cpath, C.RTLD_NOW|C.RTLD_LOCAL)
	if h == nil {
		return nil, fmt.Errorf("dlopen %s: %s", so, C.GoString(C.dlerror()))
	}
	m := &module{handle: h, fns: map[string]unsafe.Pointer{}, sync: map[string]bool{}}
	sym := func(name string) unsafe.Pointer {
		c := C.CString(name)
		defer C.free(unsafe.Pointer(c))
		return C.dlsym(h, c)
	}
	if m.launch, m.gemm = sym("hxsim_launch"), sym("hxsim_gemm"); m.launch == nil || m.gemm == nil {
		return nil, errors.New("the module has no hxsim runtime")
	}
	for _, n := range names {
		f := sym("hxsim_" + n)
		if f == nil {
			return nil, fmt.Errorf("kernel %s not found in the module", n)
		}
		m.fns[n] = f
		// A kernel synchronizes if its body uses barriers or shuffles.
		m.sync[n] = kernelSyncs(source, n)
	}
	d.mods = append(d.mods, m)
	return m, nil
}

// kernelSyncs reads whether the named kernel's body synchronizes threads.
func kernelSyncs(source, name string) bool {
	i := strings.Index(source, "void "+name+"(")
	if i < 0 {
		return true
	}
	rest := source[i:]
	if j := strings.Index(rest, "\nextern \"C\""); j > 0 {
		rest = rest[:j]
	}
	return strings.Contains(rest, "hx_warp_") || strings.Contains(rest, "__syncthreads") || strings.Contains(rest, "__shfl")
}

// Unload closes the module.
func (d *Device) Unload(m cudaexec.Module) error {
	mod := m.(*module)
	if mod.handle != nil {
		C.dlclose(mod.handle)
		mod.handle = nil
	}
	return nil
}

// Alloc returns 256-byte-aligned host memory standing for device memory.
func (d *Device) Alloc(bytes int64) (cudaexec.Ptr, error) {
	p := C.hx_alloc(C.size_t(max(bytes, 1)))
	if p == nil {
		return 0, errors.New("out of memory")
	}
	// Fill with a pattern so that reading what no step wrote shows.
	C.memset(p, 0x7f, C.size_t(max(bytes, 1)))
	ptr := cudaexec.Ptr(uintptr(p))
	delete(d.freed, ptr) // malloc may hand out freed memory again
	return ptr, nil
}

// Free releases memory from Alloc; a second Free of the same memory fails.
func (d *Device) Free(p cudaexec.Ptr) error {
	if d.freed[p] {
		return fmt.Errorf("double free of %#x", uint64(p))
	}
	d.freed[p] = true
	C.hx_free_addr(C.ulonglong(p))
	return nil
}

// HostAlloc returns C memory viewed as a byte slice.
func (d *Device) HostAlloc(bytes int64) ([]byte, error) {
	p := C.hx_alloc(C.size_t(max(bytes, 1)))
	if p == nil {
		return nil, errors.New("out of memory")
	}
	b := unsafe.Slice((*byte)(p), bytes)
	d.host[&b[0]] = p
	return b, nil
}

// HostFree releases memory from HostAlloc.
func (d *Device) HostFree(b []byte) error {
	p, ok := d.host[&b[0]]
	if !ok {
		return errors.New("HostFree of memory HostAlloc did not give")
	}
	delete(d.host, &b[0])
	C.free(p)
	return nil
}

// Upload copies host bytes into device memory.
func (d *Device) Upload(dst cudaexec.Ptr, src []byte) error {
	if len(src) > 0 {
		C.hx_to_addr(C.ulonglong(dst), unsafe.Pointer(&src[0]), C.size_t(len(src)))
	}
	return nil
}

// CopyToDevice copies (at once: the emulation has no stream).
func (d *Device) CopyToDevice(dst cudaexec.Ptr, src []byte) error { return d.Upload(dst, src) }

// CopyToHost copies device memory out.
func (d *Device) CopyToHost(dst []byte, src cudaexec.Ptr) error {
	if len(dst) > 0 {
		C.hx_from_addr(unsafe.Pointer(&dst[0]), C.ulonglong(src), C.size_t(len(dst)))
	}
	return nil
}

// Sync has nothing to wait for.
func (d *Device) Sync() error { return nil }

type launch struct {
	mod    *module
	fn     unsafe.Pointer
	sync   bool
	grid   [3]uint32
	block  [3]uint32
	params unsafe.Pointer // void*[n] followed by the values
}

type gemm struct {
	mod *module
	g   cudaexec.CublasGemm
}

// PrepareLaunch packs the parameters into C memory as cuLaunchKernel's
// kernelParams array would point at them.
func (d *Device) PrepareLaunch(m cudaexec.Module, name string, grid, block [3]uint32, params [][]byte) (cudaexec.Prepared, error) {
	mod := m.(*module)
	fn, ok := mod.fns[name]
	if !ok {
		return nil, fmt.Errorf("kernel %s is not in the module", name)
	}
	if grid[0]*grid[1]*grid[2] == 0 || block[0]*block[1]*block[2] == 0 || block[0]*block[1]*block[2] > 1024 {
		return nil, fmt.Errorf("kernel %s: grid %v, block %v", name, grid, block)
	}
	size := 8 * len(params)
	for _, p := range params {
		size += (len(p) + 7) / 8 * 8
	}
	mem := C.hx_alloc(C.size_t(size))
	ptrs := unsafe.Slice((*unsafe.Pointer)(mem), len(params))
	at := unsafe.Add(mem, 8*len(params))
	for i, p := range params {
		ptrs[i] = at
		C.memcpy(at, unsafe.Pointer(&p[0]), C.size_t(len(p)))
		at = unsafe.Add(at, (len(p)+7)/8*8)
	}
	return &launch{mod: mod, fn: fn, sync: mod.sync[name], grid: grid, block: block, params: mem}, nil
}

// PrepareGemm keeps the GEMM; it has no pointers into Go memory.
func (d *Device) PrepareGemm(g cudaexec.CublasGemm) (cudaexec.Prepared, error) {
	if len(d.mods) == 0 {
		return nil, errors.New("no module loaded to run GEMMs with")
	}
	switch g.DType {
	case 1, 10, 16:
	default:
		return nil, fmt.Errorf("GEMM on element type %d", g.DType)
	}
	return &gemm{mod: d.mods[len(d.mods)-1], g: g}, nil
}

// Release frees a prepared launch's parameters.
func (d *Device) Release(p cudaexec.Prepared) {
	if l, ok := p.(*launch); ok && l.params != nil {
		C.free(l.params)
		l.params = nil
	}
}

// Enqueue runs the work at once.
func (d *Device) Enqueue(p cudaexec.Prepared) error {
	switch w := p.(type) {
	case *launch:
		sync := C.int(0)
		if w.sync {
			sync = 1
		}
		if rc := C.call_launch(w.mod.launch, w.fn, C.uint(w.grid[0]), C.uint(w.grid[1]), C.uint(w.grid[2]),
			C.uint(w.block[0]), C.uint(w.block[1]), C.uint(w.block[2]), sync, (*unsafe.Pointer)(w.params)); rc != 0 {
			return errors.New("emulated launch failed")
		}
	case *gemm:
		g := w.g
		C.call_gemm(w.mod.gemm, boolInt(g.TransA), boolInt(g.TransB), C.longlong(g.M), C.longlong(g.N), C.longlong(g.K),
			C.float(g.Alpha), C.ulonglong(g.A), C.longlong(g.LDA), C.longlong(g.StrideA),
			C.ulonglong(g.B), C.longlong(g.LDB), C.longlong(g.StrideB), C.float(g.Beta),
			C.ulonglong(g.C), C.longlong(g.LDC), C.longlong(g.StrideC), C.longlong(g.Batch), C.int(g.DType))
	default:
		return fmt.Errorf("unknown work %T", p)
	}
	return nil
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// KernelNames lists a kernel set's names.
func KernelNames(ks []kernels.Kernel) []string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.Name
	}
	return names
}
