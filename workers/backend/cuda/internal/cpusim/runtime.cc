// The CPU emulation's launcher and cuBLAS GEMM, compiled into each module.
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include "hxsim.h"

extern "C" {
hxsim_dim3 hxsim_threadIdx, hxsim_blockIdx, hxsim_blockDim, hxsim_gridDim;
}

typedef void (*hxsim_tramp)(void**);

static const size_t kStack = 256 * 1024;
static int g_threads;
static ucontext_t g_main;
static ucontext_t* g_fibers;
static char** g_stacks;
static int* g_done;
static int g_cur;
static int g_capacity;
static unsigned char* g_xbuf;
static hxsim_tramp g_fn;
static void** g_params;

static void set_tid(int t) {
  hxsim_threadIdx.x = t % hxsim_blockDim.x;
  hxsim_threadIdx.y = (t / hxsim_blockDim.x) % hxsim_blockDim.y;
  hxsim_threadIdx.z = t / (hxsim_blockDim.x * hxsim_blockDim.y);
}

static void fiber_main() {
  g_fn(g_params);
  g_done[g_cur] = 1;
}

extern "C" void hxsim_syncthreads(void) { swapcontext(&g_fibers[g_cur], &g_main); }

extern "C" void hxsim_exchange(const void* v, void* out, int size, int src) {
  memcpy(g_xbuf + 8 * g_cur, v, size);
  hxsim_syncthreads();
  int from = (g_cur & ~31) | (src & 31);
  memcpy(out, g_xbuf + 8 * from, size);
  hxsim_syncthreads();
}

static int ensure(int n) {
  if (n <= g_capacity) return 0;
  g_fibers = (ucontext_t*)realloc(g_fibers, sizeof(ucontext_t) * n);
  g_stacks = (char**)realloc(g_stacks, sizeof(char*) * n);
  g_done = (int*)realloc(g_done, sizeof(int) * n);
  g_xbuf = (unsigned char*)realloc(g_xbuf, 8 * n);
  if (!g_fibers || !g_stacks || !g_done || !g_xbuf) return -1;
  for (int i = g_capacity; i < n; ++i) {
    g_stacks[i] = (char*)malloc(kStack);
    if (!g_stacks[i]) return -1;
  }
  g_capacity = n;
  return 0;
}

// hxsim_launch runs a kernel over its grid, block after block. Kernels
// that synchronize run one fiber per thread, switched at each barrier;
// the others run thread after thread.
extern "C" int hxsim_launch(hxsim_tramp fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                            unsigned by, unsigned bz, int sync, void** params) {
  int n = (int)(bx * by * bz);
  hxsim_blockDim = {bx, by, bz};
  hxsim_gridDim = {gx, gy, gz};
  g_fn = fn;
  g_params = params;
  if (sync && ensure(n) != 0) return -1;
  for (unsigned z = 0; z < gz; ++z)
    for (unsigned y = 0; y < gy; ++y)
      for (unsigned x = 0; x < gx; ++x) {
        hxsim_blockIdx = {x, y, z};
        if (!sync) {
          for (int t = 0; t < n; ++t) {
            set_tid(t);
            fn(params);
          }
          continue;
        }
        for (int t = 0; t < n; ++t) {
          getcontext(&g_fibers[t]);
          g_fibers[t].uc_stack.ss_sp = g_stacks[t];
          g_fibers[t].uc_stack.ss_size = kStack;
          g_fibers[t].uc_link = &g_main;
          makecontext(&g_fibers[t], fiber_main, 0);
          g_done[t] = 0;
        }
        int live = n;
        while (live > 0) {
          for (int t = 0; t < n; ++t) {
            if (g_done[t]) continue;
            g_cur = t;
            set_tid(t);
            swapcontext(&g_main, &g_fibers[t]);
            if (g_done[t]) --live;
          }
        }
      }
  return 0;
}

// Element types, numbered as ONNX does.
enum { kFloat = 1, kHalf = 10, kBF16 = 16 };

static float load(const void* p, long long i, int t) {
  if (t == kFloat) return ((const float*)p)[i];
  unsigned short bits = ((const unsigned short*)p)[i];
  if (t == kHalf) {
    _Float16 h;
    memcpy(&h, &bits, 2);
    return (float)h;
  }
  unsigned int u = ((unsigned int)bits) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void store(void* p, long long i, int t, float v) {
  if (t == kFloat) {
    ((float*)p)[i] = v;
    return;
  }
  unsigned short bits;
  if (t == kHalf) {
    _Float16 h = (_Float16)v;
    memcpy(&bits, &h, 2);
  } else {
    unsigned int u;
    memcpy(&u, &v, 4);
    bits = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  ((unsigned short*)p)[i] = bits;
}

// hxsim_gemm is cublasGemmStridedBatchedEx by its definition: column-major
// operands, C = alpha*op(A)*op(B) + beta*C, C not read when beta is 0.
extern "C" void hxsim_gemm(int transa, int transb, long long m, long long n, long long k, float alpha,
                           unsigned long long A, long long lda, long long sA, unsigned long long B,
                           long long ldb, long long sB, float beta, unsigned long long C, long long ldc,
                           long long sC, long long batch, int type) {
  for (long long b = 0; b < batch; ++b) {
    const void* a = (const char*)A + b * sA * (type == kFloat ? 4 : 2);
    const void* bb = (const char*)B + b * sB * (type == kFloat ? 4 : 2);
    void* c = (char*)C + b * sC * (type == kFloat ? 4 : 2);
    for (long long j = 0; j < n; ++j)
      for (long long i = 0; i < m; ++i) {
        float acc = 0.0f;
        for (long long p = 0; p < k; ++p) {
          float x = load(a, transa ? p + i * lda : i + p * lda, type);
          float y = load(bb, transb ? j + p * ldb : p + j * ldb, type);
          acc += x * y;
        }
        float v = alpha * acc;
        if (beta != 0.0f) v += beta * load(c, i + j * ldc, type);
        store(c, i + j * ldc, type, v);
      }
  }
}
