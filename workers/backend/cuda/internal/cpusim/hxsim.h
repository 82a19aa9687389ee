// Host emulation of the CUDA built-ins the cuda backend's kernels use, so
// that the generated source compiles as C++ (g++) and runs on the CPU in
// tests: one fiber per thread where a kernel synchronizes (runtime.cc).
#ifndef HXSIM_H
#define HXSIM_H
#include <math.h>
#include <string.h>

struct hxsim_dim3 { unsigned int x, y, z; };
extern "C" {
extern hxsim_dim3 hxsim_threadIdx, hxsim_blockIdx, hxsim_blockDim, hxsim_gridDim;
void hxsim_syncthreads(void);
// hxsim_exchange publishes this thread's value and reads the one of lane
// src of the same warp (every thread of the block takes part).
void hxsim_exchange(const void* v, void* out, int size, int src);
}

#define threadIdx hxsim_threadIdx
#define blockIdx hxsim_blockIdx
#define blockDim hxsim_blockDim
#define gridDim hxsim_gridDim
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() hxsim_syncthreads()
#define __syncwarp() hxsim_syncthreads()

inline float __uint_as_float(unsigned int u) { float f; memcpy(&f, &u, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned int u; memcpy(&u, &f, 4); return u; }

template <typename T> inline T __shfl_xor_sync(unsigned int, T v, int laneMask) {
  T out;
  hxsim_exchange(&v, &out, (int)sizeof(T), (int)((threadIdx.x & 31) ^ (unsigned)laneMask));
  return out;
}
template <typename T> inline T __shfl_down_sync(unsigned int, T v, unsigned int delta) {
  T out;
  unsigned int lane = threadIdx.x & 31;
  hxsim_exchange(&v, &out, (int)sizeof(T), (int)(lane + delta < 32 ? lane + delta : lane));
  return out;
}

// The float16 conversions the device does with cvt instructions, defined
// after the generated source declares hx_half.
#define HXSIM_HALF_CONVERSIONS                                              \
  inline float hx_h2f(hx_half h) {                                          \
    _Float16 v;                                                             \
    memcpy(&v, &h.x, 2);                                                    \
    return (float)v;                                                        \
  }                                                                         \
  inline hx_half hx_f2h(float f) {                                          \
    _Float16 v = (_Float16)f;                                               \
    hx_half h;                                                              \
    memcpy(&h.x, &v, 2);                                                    \
    return h;                                                               \
  }
#endif
