package driver

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"fmt"
	"unsafe"
)

// cudaDataType values (library_types.h).
const (
	cudaR32F  = 0
	cudaR16F  = 2
	cudaR16BF = 14
)

// cublasComputeType_t values (cublas_api.h).
const (
	computeF32     = 68
	computeF32TF32 = 77
)

// cublasGemmDefault is CUBLAS_GEMM_DEFAULT.
const cublasGemmDefault = -1

// BLAS is a cuBLAS handle bound to one stream.
type BLAS struct {
	s *Stream
	h unsafe.Pointer
}

// NewBLAS creates a cuBLAS handle on the stream, with its own workspace
// (so that no call allocates, as CUDA graph capture requires).
func (s *Stream) NewBLAS(workspace uint64, workspaceBytes int64) (*BLAS, error) {
	b := &BLAS{s: s}
	l := s.c.l
	err := s.c.do(func() error {
		if err := l.blasErr("cublasCreate", C.c_i_ppv(l.blas["cublasCreate_v2"], &b.h)); err != nil {
			return err
		}
		if err := l.blasErr("cublasSetStream", C.c_i_pv_pv(l.blas["cublasSetStream_v2"], b.h, s.s)); err != nil {
			return err
		}
		if workspaceBytes > 0 {
			return l.blasErr("cublasSetWorkspace", C.c_set_workspace(l.blas["cublasSetWorkspace_v2"], b.h, C.ulonglong(workspace), C.size_t(workspaceBytes)))
		}
		return nil
	})
	if err != nil {
		if b.h != nil {
			_ = b.Destroy()
		}
		return nil, err
	}
	return b, nil
}

// Version is cuBLAS's version (120x0x: 12.x).
func (b *BLAS) Version() (int, error) {
	var v C.int
	err := b.s.c.do(func() error {
		return b.s.c.l.blasErr("cublasGetVersion", C.c_i_pv_pv(b.s.c.l.blas["cublasGetVersion_v2"], b.h, unsafe.Pointer(&v)))
	})
	return int(v), err
}

// Destroy releases the handle.
func (b *BLAS) Destroy() error {
	return b.s.c.do(func() error { return b.s.c.l.blasErr("cublasDestroy", C.c_i_pv(b.s.c.l.blas["cublasDestroy_v2"], b.h)) })
}

// GemmArgs is one cublasGemmStridedBatchedEx call (column-major).
type GemmArgs struct {
	TransA, TransB            bool
	M, N, K                   int
	A, B, C                   uint64
	LDA, LDB, LDC             int
	StrideA, StrideB, StrideC int64
	Batch                     int
	Alpha, Beta               float32
	// Type is "f32", "f16" or "bf16" (A, B and C alike); TF32 lets f32
	// products use TF32 tensor cores.
	Type string
	TF32 bool
}

// Gemm queues a strided batched GEMM on the handle's stream, accumulating
// in float32.
func (b *BLAS) Gemm(g GemmArgs) error {
	var dt C.int
	switch g.Type {
	case "f32":
		dt = cudaR32F
	case "f16":
		dt = cudaR16F
	case "bf16":
		dt = cudaR16BF
	default:
		return fmt.Errorf("GEMM on %q", g.Type)
	}
	compute := C.int(computeF32)
	if g.TF32 && g.Type == "f32" {
		compute = computeF32TF32
	}
	op := func(t bool) C.int {
		if t {
			return 1
		}
		return 0
	}
	s := b.s
	return s.c.l.blasErr("cublasGemmStridedBatchedEx", C.c_gemm(s.setCurrent(), s.c.ctx, s.c.l.blas["cublasGemmStridedBatchedEx"], b.h,
		op(g.TransA), op(g.TransB), C.int(g.M), C.int(g.N), C.int(g.K), C.float(g.Alpha),
		C.ulonglong(g.A), dt, C.int(g.LDA), C.longlong(g.StrideA),
		C.ulonglong(g.B), dt, C.int(g.LDB), C.longlong(g.StrideB), C.float(g.Beta),
		C.ulonglong(g.C), dt, C.int(g.LDC), C.longlong(g.StrideC), C.int(g.Batch), compute, cublasGemmDefault))
}
