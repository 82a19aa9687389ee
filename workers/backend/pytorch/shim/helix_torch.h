/* helix_torch.h: the C interface of libhelix_torch.so, a small shim over
 * libtorch's C++ API (TorchScript) that helix-worker loads with dlopen
 * (workers/backend/pytorch). Every function catches C++ exceptions and
 * returns them as a message (malloc'd, freed with helix_torch_free); NULL
 * means success. Nothing here keeps a pointer the caller passed after the
 * call returns. */
#ifndef HELIX_TORCH_H
#define HELIX_TORCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The datatypes, numbered as workers/backend/pytorch/datatype.go numbers them. */
enum helix_torch_dtype {
  HELIX_TORCH_BOOL = 1,
  HELIX_TORCH_UINT8 = 2,
  HELIX_TORCH_INT8 = 3,
  HELIX_TORCH_INT16 = 4,
  HELIX_TORCH_INT32 = 5,
  HELIX_TORCH_INT64 = 6,
  HELIX_TORCH_FP16 = 7,
  HELIX_TORCH_FP32 = 8,
  HELIX_TORCH_FP64 = 9,
  HELIX_TORCH_BF16 = 10,
};

/* A dense tensor in host memory, row-major. */
typedef struct {
  int32_t dtype;
  int32_t ndim;
  const int64_t *shape;
  void *data;
  int64_t nbytes;
} helix_torch_tensor;

/* An output tensor the shim allocated; helix_torch_free_outputs frees it. */
typedef struct {
  int32_t dtype;
  int32_t ndim;
  int64_t shape[16];
  const void *data;
  int64_t nbytes;
  void *handle; /* the tensor that owns data */
} helix_torch_output;

typedef struct helix_torch_module helix_torch_module;

/* The ABI version of this header; the Go side refuses another. */
#define HELIX_TORCH_ABI 1
int32_t helix_torch_abi(void);
/* libtorch's version, e.g. "2.11.0" (static storage). */
const char *helix_torch_version(void);
void helix_torch_free(void *p);

/* Loads libtorch_cuda (dlopen) and returns the number of CUDA devices; 0
 * when CUDA or a GPU is missing (why in *reason, malloc'd, may be NULL). */
int32_t helix_torch_cuda_devices(char **reason);

/* Loads a TorchScript file onto the CPU (device < 0) or CUDA device
 * `device`, in eval mode. */
char *helix_torch_load(const char *path, int32_t device, helix_torch_module **out);
void helix_torch_unload(helix_torch_module *m);

/* forward()'s signature as JSON: {"args":[{"name":"x","type":"Tensor"}],
 * "returns":"Tensor"} (malloc'd into *json). */
char *helix_torch_signature(helix_torch_module *m, char **json);

/* Runs forward(inputs...) with intra_threads intra-op threads (0: leave
 * as is). The result must be a tensor, or a tuple or list of tensors; its
 * elements go to outs[0..*n_outs) (at most max_outs), contiguous on the
 * host. Free them with helix_torch_free_outputs. */
char *helix_torch_forward(helix_torch_module *m, const helix_torch_tensor *inputs, int32_t n_inputs,
                          int32_t intra_threads, helix_torch_output *outs, int32_t max_outs,
                          int32_t *n_outs);
void helix_torch_free_outputs(helix_torch_output *outs, int32_t n);

#ifdef __cplusplus
}
#endif
#endif
