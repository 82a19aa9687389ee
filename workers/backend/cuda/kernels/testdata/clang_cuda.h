// Included first when the tests compile the generated kernels to PTX with
// clang (-x cuda -nocudainc): what the CUDA toolkit's headers would
// otherwise declare. The math functions and builtins come from clang's own
// CUDA headers; __shfl_xor_sync is defined on clang's NVVM builtin, as
// clang's __clang_cuda_intrinsics.h does (that header needs the toolkit).
#include <stddef.h>
#include <limits.h>
#define HUGE_VAL __builtin_huge_val()
#define HUGE_VALF __builtin_huge_valf()
#define __device__ __attribute__((device))
#define __global__ __attribute__((global))
#define __host__ __attribute__((host))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define CUDA_VERSION 12000
#include "__clang_cuda_builtin_vars.h"
#include "__clang_cuda_libdevice_declares.h"
#include "__clang_cuda_device_functions.h"
#include "__clang_cuda_math.h"
__device__ inline float __shfl_xor_sync(unsigned int mask, float v, int laneMask) {
  return __nvvm_shfl_sync_bfly_f32(mask, v, laneMask, 0x1f);
}
