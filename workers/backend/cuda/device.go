package cuda

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/helixflow/helixflow/workers/backend/cuda/driver"
	"github.com/helixflow/helixflow/workers/backend/cuda/exec"
	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
)

// gpuDevice is exec.Device on one GPU: a context, and for an instance a
// stream with its cuBLAS handle (the loader, which only allocates and
// uploads weights and compiles, has neither).
type gpuDevice struct {
	libs   *driver.Libs
	ctx    *driver.Context
	info   driver.DeviceInfo
	stream *driver.Stream
	blas   *driver.BLAS
	// capturing: the goroutine holds its OS thread from BeginCapture to
	// EndCapture.
	capturing bool
}

var (
	_ exec.Device       = (*gpuDevice)(nil)
	_ exec.GraphDevice  = (*gpuDevice)(nil)
	_ exec.TimingDevice = (*gpuDevice)(nil)
)

type gpuModule struct {
	mod *driver.Module
	fns map[string]driver.Function
}

type gpuLaunch struct {
	fn     driver.Function
	grid   [3]uint32
	block  [3]uint32
	params *driver.Params
}

type gpuGemm struct{ args driver.GemmArgs }

type gpuGraph struct{ g *driver.Graph }

func (d *gpuDevice) Alloc(bytes int64) (exec.Ptr, error) {
	p, err := d.ctx.Alloc(bytes)
	return exec.Ptr(p), err
}

func (d *gpuDevice) Free(p exec.Ptr) error                 { return d.ctx.Free(uint64(p)) }
func (d *gpuDevice) HostAlloc(bytes int64) ([]byte, error) { return d.ctx.HostAlloc(bytes) }
func (d *gpuDevice) HostFree(b []byte) error               { return d.ctx.HostFree(b) }
func (d *gpuDevice) Upload(dst exec.Ptr, src []byte) error {
	return d.ctx.Upload(uint64(dst), src)
}

// Compile builds the source with NVRTC for this GPU's architecture and
// loads it.
func (d *gpuDevice) Compile(source string, names []string) (exec.Module, error) {
	cubin, err := d.libs.CompileCUBIN(source, "helix_kernels.cu", d.info.Major, d.info.Minor)
	if err != nil {
		return nil, fmt.Errorf("compiling kernels with NVRTC: %w", err)
	}
	return d.load(cubin, names)
}

func (d *gpuDevice) load(cubin []byte, names []string) (*gpuModule, error) {
	mod, err := d.ctx.LoadModule(cubin)
	if err != nil {
		return nil, err
	}
	m := &gpuModule{mod: mod, fns: map[string]driver.Function{}}
	for _, n := range names {
		f, err := mod.Function(n)
		if err != nil {
			_ = mod.Unload()
			return nil, err
		}
		m.fns[n] = f
	}
	return m, nil
}

func (d *gpuDevice) Unload(m exec.Module) error { return m.(*gpuModule).mod.Unload() }

func (d *gpuDevice) PrepareLaunch(m exec.Module, kernel string, grid, block [3]uint32, params [][]byte) (exec.Prepared, error) {
	fn, ok := m.(*gpuModule).fns[kernel]
	if !ok {
		return nil, fmt.Errorf("kernel %s is not in the module", kernel)
	}
	return &gpuLaunch{fn: fn, grid: grid, block: block, params: driver.NewParams(params)}, nil
}

func (d *gpuDevice) PrepareGemm(g exec.CublasGemm) (exec.Prepared, error) {
	t := map[graph.DType]string{graph.Float: "f32", graph.Float16: "f16", graph.BFloat16: "bf16"}[g.DType]
	if t == "" {
		return nil, fmt.Errorf("%w: GEMM on %s", graph.ErrUnsupported, g.DType)
	}
	return &gpuGemm{args: driver.GemmArgs{
		TransA: g.TransA, TransB: g.TransB, M: int(g.M), N: int(g.N), K: int(g.K),
		A: uint64(g.A), B: uint64(g.B), C: uint64(g.C), LDA: int(g.LDA), LDB: int(g.LDB), LDC: int(g.LDC),
		StrideA: g.StrideA, StrideB: g.StrideB, StrideC: g.StrideC, Batch: int(g.Batch),
		Alpha: g.Alpha, Beta: g.Beta, Type: t, TF32: g.TF32,
	}}, nil
}

func (d *gpuDevice) Release(p exec.Prepared) {
	switch w := p.(type) {
	case *gpuLaunch:
		w.params.Free()
	case *gpuGraph:
		_ = w.g.Destroy()
	}
}

func (d *gpuDevice) Enqueue(p exec.Prepared) error {
	switch w := p.(type) {
	case *gpuLaunch:
		return d.stream.Launch(w.fn, w.grid, w.block, w.params)
	case *gpuGemm:
		return d.blas.Gemm(w.args)
	case *gpuGraph:
		return d.stream.LaunchGraph(w.g)
	}
	return fmt.Errorf("unknown work %T", p)
}

func (d *gpuDevice) CopyToDevice(dst exec.Ptr, src []byte) error {
	return d.stream.CopyToDevice(uint64(dst), src)
}

func (d *gpuDevice) CopyToHost(dst []byte, src exec.Ptr) error {
	return d.stream.CopyToHost(dst, uint64(src))
}

func (d *gpuDevice) Sync() error { return d.stream.Sync() }

// BeginCapture locks the OS thread until EndCapture: a stream capture
// belongs to the thread that began it.
func (d *gpuDevice) BeginCapture() error {
	runtime.LockOSThread()
	if err := d.stream.BeginCapture(); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	d.capturing = true
	return nil
}

func (d *gpuDevice) EndCapture() (exec.Prepared, error) {
	if !d.capturing {
		return nil, errors.New("EndCapture without BeginCapture")
	}
	defer runtime.UnlockOSThread()
	d.capturing = false
	g, err := d.stream.EndCapture()
	if err != nil {
		return nil, err
	}
	return &gpuGraph{g: g}, nil
}

func (d *gpuDevice) NewEvent() (exec.Event, error) { return d.ctx.NewEvent() }
func (d *gpuDevice) Record(e exec.Event) error     { return d.stream.Record(e.(*driver.Event)) }
func (d *gpuDevice) Elapsed(a, b exec.Event) (float64, error) {
	return d.ctx.Elapsed(a.(*driver.Event), b.(*driver.Event))
}
func (d *gpuDevice) DestroyEvent(e exec.Event) { _ = e.(*driver.Event).Destroy() }
