// Package kernels writes the CUDA C source of the cuda backend's kernels,
// compiled at load with NVRTC. Every kernel is `extern "C"` (so the module
// can be searched by name) and takes only 8-byte scalars, pointers, 4-byte
// floats and Dims structs by value, so a launch's parameters can be packed
// without knowing C's layout rules.
//
// The generated source is plain CUDA C with no #include: NVRTC compiles it
// with nothing but its built-in declarations. Defining HELIX_SIM instead
// compiles it as C++ against a host emulation of the CUDA built-ins (used
// by the tests, which run the kernels on the CPU); that block also holds a
// trampoline per kernel that unpacks a launch's parameters.
package kernels

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
)

// MaxRank is the largest rank a Dims parameter describes.
const MaxRank = 6

// ParamKind is how a kernel parameter is passed.
type ParamKind int

// Parameter kinds: a device pointer, a long long, a float, or a Dims.
const (
	Ptr ParamKind = iota
	I64
	F32
	DimsParam
)

// Size is the parameter's size in bytes.
func (k ParamKind) Size() int {
	switch k {
	case F32:
		return 4
	case DimsParam:
		return 8 * MaxRank
	}
	return 8
}

// Param is one kernel parameter: its kind and C declaration.
type Param struct {
	Kind ParamKind
	Decl string // e.g. "const float* __restrict__ in0"
}

// Kernel is one __global__ function.
type Kernel struct {
	Name   string
	Params []Param
	// Body is the function's body, braces included.
	Body string
	// Sync tells that the kernel uses __syncthreads or warp shuffles
	// (the CPU emulation runs such kernels with one fiber per thread).
	Sync bool
}

// Source is the kernel's definition.
func (k Kernel) Source() string {
	var b strings.Builder
	fmt.Fprintf(&b, "extern \"C\" __global__ void %s(", k.Name)
	for i, p := range k.Params {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.Decl)
	}
	b.WriteString(")\n")
	b.WriteString(k.Body)
	b.WriteString("\n")
	return b.String()
}

// trampoline is the HELIX_SIM entry point that calls the kernel with its
// parameters unpacked from an array of pointers (as cuLaunchKernel takes
// them).
func (k Kernel) trampoline() string {
	var b strings.Builder
	fmt.Fprintf(&b, "extern \"C\" void hxsim_%s(void** p) { %s(", k.Name, k.Name)
	for i, p := range k.Params {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "*(%s*)p[%d]", paramType(p.Decl), i)
	}
	b.WriteString("); }\n")
	return b.String()
}

// paramType strips the parameter name (and __restrict__) from a declaration.
func paramType(decl string) string {
	decl = strings.ReplaceAll(decl, "__restrict__", "")
	fields := strings.Fields(decl)
	return strings.Join(fields[:len(fields)-1], " ")
}

// named gives a kernel a name derived from its text, so that identical
// kernels generated for different nodes or batch sizes share one function.
func named(prefix string, k Kernel) Kernel {
	k.Name = "KERNEL"
	sum := sha256.Sum256([]byte(k.Source()))
	k.Name = prefix + "_" + hex.EncodeToString(sum[:5])
	return k
}

// Module is the source of a module holding the kernels (each once, in name
// order), after the prelude.
func Module(ks []Kernel) string {
	byName := map[string]Kernel{}
	for _, k := range ks {
		byName[k.Name] = k
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(prelude)
	for _, n := range names {
		b.WriteString("\n")
		b.WriteString(byName[n].Source())
	}
	b.WriteString("\n#ifdef HELIX_SIM\n")
	for _, n := range names {
		b.WriteString(byName[n].trampoline())
	}
	b.WriteString("#endif\n")
	return b.String()
}

// ctype is how an element type is stored and computed with in C.
type ctype struct {
	storage string
	compute string
	load    string // format with the loaded storage expression
	store   string // format with the compute expression
	// round makes a computed value exact in the storage type ("" when it
	// already is).
	round string
}

var ctypes = map[graph.DType]ctype{
	graph.Float:    {storage: "float", compute: "float", load: "%s", store: "%s"},
	graph.Float16:  {storage: "hx_half", compute: "float", load: "hx_h2f(%s)", store: "hx_f2h(%s)", round: "hx_rh(%s)"},
	graph.BFloat16: {storage: "hx_bf16", compute: "float", load: "hx_b2f(%s)", store: "hx_f2b(%s)", round: "hx_rb(%s)"},
	graph.Int32:    {storage: "int", compute: "int", load: "%s", store: "%s"},
	graph.Int64:    {storage: "long long", compute: "long long", load: "%s", store: "%s"},
	graph.Int8:     {storage: "signed char", compute: "int", load: "(int)%s", store: "(signed char)(%s)"},
	graph.Uint8:    {storage: "unsigned char", compute: "int", load: "(int)%s", store: "(unsigned char)(%s)"},
	graph.Bool:     {storage: "unsigned char", compute: "int", load: "(int)%s", store: "(unsigned char)((%s) != 0)"},
}

// Supported reports whether kernels can hold elements of type d.
func Supported(d graph.DType) bool { _, ok := ctypes[d]; return ok }

func ct(d graph.DType) ctype {
	c, ok := ctypes[d]
	if !ok {
		panic(fmt.Sprintf("kernels: no C type for %s", d)) // callers check Supported first
	}
	return c
}

// bitsType is an unsigned type of the element size, for kernels that only
// move elements.
func bitsType(size int) string {
	switch size {
	case 1:
		return "unsigned char"
	case 2:
		return "unsigned short"
	case 4:
		return "unsigned int"
	}
	return "unsigned long long"
}

// floatTypes are the types the float kernels (softmax, normalization,
// pooling, im2col) are written for.
func isFloatKernelType(d graph.DType) bool {
	return d == graph.Float || d == graph.Float16 || d == graph.BFloat16
}

// FloatKernelType reports whether the float-only kernels take type d.
func FloatKernelType(d graph.DType) bool { return isFloatKernelType(d) }

const prelude = `// Generated by HelixFlow's cuda backend (workers/backend/cuda/kernels).
#ifdef HELIX_SIM
#include "hxsim.h"
#endif
typedef struct { unsigned short x; } hx_half;
typedef struct { unsigned short x; } hx_bf16;
typedef struct { long long d[6]; } hx_dims;

#ifdef HELIX_SIM
HXSIM_HALF_CONVERSIONS
#else
__device__ __forceinline__ float hx_h2f(hx_half h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.x));
  return f;
}
__device__ __forceinline__ hx_half hx_f2h(float f) {
  hx_half h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x) : "f"(f));
  return h;
}
#endif
__device__ __forceinline__ float hx_b2f(hx_bf16 b) {
  return __uint_as_float(((unsigned int)b.x) << 16);
}
__device__ __forceinline__ hx_bf16 hx_f2b(float f) {
  unsigned int u = __float_as_uint(f);
  hx_bf16 b;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    b.x = (unsigned short)((u >> 16) | 0x40u); // quiet NaN
  } else {
    b.x = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  return b;
}
__device__ __forceinline__ float hx_rh(float f) { return hx_h2f(hx_f2h(f)); }
__device__ __forceinline__ float hx_rb(float f) { return hx_b2f(hx_f2b(f)); }

// hx_offset is the element offset of flat index i in an input broadcast to
// the iteration shape: mode 0 contiguous, 1 a single element, 2 strided,
// 3 repeating with period st.d[0] (an input spanning the trailing dims).
// I is the index type: 32-bit where every size fits, for cheaper division.
template <typename I>
__device__ __forceinline__ I hx_offset(I i, long long mode, long long rank, const hx_dims& shape,
                                       const hx_dims& st) {
  if (mode == 0) return i;
  if (mode == 1) return 0;
  if (mode == 3) return i % (I)st.d[0];
  I off = 0;
  for (int d = (int)rank - 1; d >= 0; --d) {
    I s = (I)shape.d[d];
    I q = i / s;
    off += (i - q * s) * (I)st.d[d];
    i = q;
  }
  return off;
}

__device__ __forceinline__ float hx_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float hx_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) {
    float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}
__device__ __forceinline__ float hx_neg_inf() { return __uint_as_float(0xff800000u); }
__device__ __forceinline__ float hx_gelu(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865475f));
}
__device__ __forceinline__ float hx_gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float hx_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
`
