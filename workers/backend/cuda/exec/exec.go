// Package exec runs lowered programs on a device: it uploads a model's
// weights, holds one instance's activation arena and staging buffers,
// resolves each program's buffer references to device addresses once
// (per batch size), and replays the steps for every batch. The device is an
// interface: the GPU through the CUDA driver in production, a CPU
// emulation in tests.
package exec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/kernels"
	"github.com/helixflow/helixflow/workers/backend/cuda/lower"
)

// Ptr is a device address.
type Ptr uint64

// Module is a compiled kernel module, as a Device made it.
type Module any

// Prepared is a launch or GEMM with its parameters resolved, kept by the
// device in memory that stays put, ready to enqueue again and again.
type Prepared any

// ErrNotSupported is returned by optional device features (CUDA graphs,
// timing) a device does not have.
var ErrNotSupported = errors.New("not supported by this device")

// Device runs work in order on one stream of one device. Calls come from
// one goroutine at a time.
type Device interface {
	// Alloc and Free manage device memory (at load only).
	Alloc(bytes int64) (Ptr, error)
	Free(p Ptr) error
	// HostAlloc gives page-locked host memory for staging; HostFree
	// releases it.
	HostAlloc(bytes int64) ([]byte, error)
	HostFree(b []byte) error
	// Upload copies host bytes to the device and waits.
	Upload(dst Ptr, src []byte) error
	// Compile builds a module from CUDA C source and finds the kernels.
	Compile(source string, kernels []string) (Module, error)
	Unload(m Module) error
	// PrepareLaunch packs a kernel launch; params are each parameter's
	// bytes.
	PrepareLaunch(m Module, kernel string, grid, block [3]uint32, params [][]byte) (Prepared, error)
	// PrepareGemm packs a cuBLAS GEMM.
	PrepareGemm(g CublasGemm) (Prepared, error)
	Release(p Prepared)
	// Enqueue queues prepared work on the stream.
	Enqueue(p Prepared) error
	// CopyToDevice and CopyToHost queue copies between page-locked host
	// memory (from HostAlloc) and the device.
	CopyToDevice(dst Ptr, src []byte) error
	CopyToHost(dst []byte, src Ptr) error
	// Sync waits for everything queued.
	Sync() error
}

// GraphDevice can record a sequence of enqueued work once and replay it
// with one launch (CUDA graphs).
type GraphDevice interface {
	BeginCapture() error
	// EndCapture returns the captured work as one Prepared.
	EndCapture() (Prepared, error)
}

// TimingDevice records events on the stream to time steps.
type TimingDevice interface {
	NewEvent() (Event, error)
	Record(e Event) error
	// Elapsed is the time between two recorded events, after Sync.
	Elapsed(start, end Event) (float64, error) // milliseconds
	DestroyEvent(e Event)
}

// Event is a device event.
type Event any

// CublasGemm is a GEMM as cublasGemmStridedBatchedEx takes it: column-major
// operands, op flags, leading dimensions and batch strides in elements.
type CublasGemm struct {
	TransA, TransB            bool
	M, N, K                   int64
	A, B, C                   Ptr
	LDA, LDB, LDC             int64
	StrideA, StrideB, StrideC int64
	Batch                     int64
	Alpha, Beta               float32
	DType                     graph.DType
	TF32                      bool
}

// ToCublas states a row-major GEMM in cuBLAS's column-major terms: a
// row-major M×N matrix is a column-major N×M one, so C = A·B becomes
// Cᵀ = Bᵀ·Aᵀ with the operands swapped.
func ToCublas(g *lower.Gemm, a, b, c Ptr) (CublasGemm, error) {
	cg := CublasGemm{
		TransA: g.TransB, TransB: g.TransA,
		M: g.N, N: g.M, K: g.K,
		A: b, LDA: g.LDB, StrideA: g.StrideB,
		B: a, LDB: g.LDA, StrideB: g.StrideA,
		C: c, LDC: g.LDC, StrideC: g.StrideC,
		Batch: g.Batch, Alpha: g.Alpha, Beta: g.Beta, DType: g.DType, TF32: g.TF32,
	}
	for _, v := range []int64{cg.M, cg.N, cg.K, cg.LDA, cg.LDB, cg.LDC, cg.Batch} {
		if v > math.MaxInt32 {
			return CublasGemm{}, fmt.Errorf("%w: a GEMM dimension of %d does not fit cuBLAS's int", graph.ErrUnsupported, v)
		}
	}
	return cg, nil
}

// PackParams lays out a launch's arguments as the kernel's parameters:
// 8-byte pointers and integers, 4-byte floats, 48-byte Dims.
func PackParams(args []lower.Arg, resolve func(lower.Ref) Ptr) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		b := make([]byte, a.Kind.Size())
		switch a.Kind {
		case kernels.Ptr:
			binary.LittleEndian.PutUint64(b, uint64(resolve(a.Ref)))
		case kernels.I64:
			binary.LittleEndian.PutUint64(b, uint64(a.I))
		case kernels.F32:
			binary.LittleEndian.PutUint32(b, math.Float32bits(a.F))
		case kernels.DimsParam:
			for j, d := range a.Dims {
				binary.LittleEndian.PutUint64(b[8*j:], uint64(d))
			}
		}
		out[i] = b
	}
	return out
}
