// See shim.h.
#include <dlfcn.h>
#include <stdlib.h>
#include "shim.h"

int c_i_u(void* f, unsigned int a) { return ((fn_i_u)f)(a); }
int c_i_pi(void* f, int* a) { return ((fn_i_pi)f)(a); }
int c_i_pi_i(void* f, int* a, int b) { return ((fn_i_pi_i)f)(a, b); }
int c_i_name(void* f, char* a, int b, int c) { return ((fn_i_name)f)(a, b, c); }
int c_i_attr(void* f, int* a, int b, int c) { return ((fn_i_attr)f)(a, b, c); }
int c_i_uuid(void* f, void* a, int b) { return ((fn_i_uuid)f)(a, b); }
int c_i_totalmem(void* f, size_t* a, int b) { return ((fn_i_totalmem)f)(a, b); }
int c_i_ppv_i(void* f, void** a, int b) { return ((fn_i_ppv_i)f)(a, b); }
int c_i_i(void* f, int a) { return ((fn_i_i)f)(a); }
int c_i_pv(void* f, void* a) { return ((fn_i_pv)f)(a); }
int c_i_ppv(void* f, void** a) { return ((fn_i_pv)f)((void*)a); }
int c_i_memgetinfo(void* f, size_t* a, size_t* b) { return ((fn_i_memgetinfo)f)(a, b); }
int c_i_alloc(void* f, unsigned long long* a, size_t b) { return ((fn_i_alloc)f)(a, b); }
int c_i_ull(void* f, unsigned long long a) { return ((fn_i_ull)f)(a); }
int c_i_hostalloc(void* f, void** a, size_t b, unsigned int c) { return ((fn_i_hostalloc)f)(a, b, c); }
int c_i_htod(void* f, unsigned long long a, const void* b, size_t c) { return ((fn_i_htod)f)(a, b, c); }
int c_i_ppv_u(void* f, void** a, unsigned int b) { return ((fn_i_ppv_u)f)(a, b); }
int c_i_modload(void* f, void** a, const void* b) { return ((fn_i_modload)f)(a, b); }
int c_i_getfn(void* f, void** a, void* b, const char* c) { return ((fn_i_getfn)f)(a, b, c); }
int c_i_pv_pv(void* f, void* a, void* b) { return ((fn_i_pv_pv)f)(a, b); }
int c_i_elapsed(void* f, float* a, void* b, void* c) { return ((fn_i_elapsed)f)(a, b, c); }
int c_i_pv_i(void* f, void* a, int b) { return ((fn_i_pv_i)f)(a, b); }
int c_i_pv_ppv(void* f, void* a, void** b) { return ((fn_i_pv_ppv)f)(a, b); }
int c_i_instantiate(void* f, void** a, void* b, unsigned long long c) { return ((fn_i_instantiate)f)(a, b, c); }
int c_i_errstr(void* f, int a, const char** b) { return ((fn_i_errstr)f)(a, b); }
int c_i_pv_pv_sz(void* f, void* a, void* b, size_t c) { return ((fn_i_pv_pv_sz)f)(a, b, c); }
const char* c_s_i(void* f, int a) { return ((fn_s_i)f)(a); }
int c_i_pi_pi(void* f, int* a, int* b) { return ((fn_i_pi_pi)f)(a, b); }
int c_i_create_prog(void* f, void** p, const char* src, const char* name) {
	return ((fn_i_create_prog)f)(p, src, name, 0, NULL, NULL);
}
int c_i_compile(void* f, void* p, int n, const char** opts) { return ((fn_i_compile)f)(p, n, opts); }
int c_i_pv_psz(void* f, void* a, size_t* b) { return ((fn_i_pv_psz)f)(a, b); }
int c_i_pv_pc(void* f, void* a, char* b) { return ((fn_i_pv_pc)f)(a, b); }

// The request path: each call first makes the instance's context current
// on the calling thread, in the same C call, so Go may run it on any
// thread.
int c_launch(void* setCurrent, void* ctx, void* f, void* fn, unsigned gx, unsigned gy, unsigned gz,
                    unsigned bx, unsigned by, unsigned bz, void* stream, void** params) {
	int r = ((fn_i_pv)setCurrent)(ctx);
	if (r) return r;
	return ((fn_i_launch)f)(fn, gx, gy, gz, bx, by, bz, 0, stream, params, NULL);
}
int c_htod_async(void* setCurrent, void* ctx, void* f, unsigned long long dst, const void* src, size_t n, void* stream) {
	int r = ((fn_i_pv)setCurrent)(ctx);
	if (r) return r;
	return ((fn_i_htod_async)f)(dst, src, n, stream);
}
int c_dtoh_async(void* setCurrent, void* ctx, void* f, void* dst, unsigned long long src, size_t n, void* stream) {
	int r = ((fn_i_pv)setCurrent)(ctx);
	if (r) return r;
	return ((fn_i_dtoh_async)f)(dst, src, n, stream);
}
int c_with_ctx_pv(void* setCurrent, void* ctx, void* f, void* a) {
	int r = ((fn_i_pv)setCurrent)(ctx);
	if (r) return r;
	return ((fn_i_pv)f)(a);
}
int c_with_ctx_pv_pv(void* setCurrent, void* ctx, void* f, void* a, void* b) {
	int r = ((fn_i_pv)setCurrent)(ctx);
	if (r) return r;
	return ((fn_i_pv_pv)f)(a, b);
}
// c_gemm returns the CUDA error of making the context current as a
// negative number, cuBLAS's status otherwise.
int c_gemm(void* setCurrent, void* ctx, void* f, void* handle, int ta, int tb, int m, int n, int k,
                  float alpha, unsigned long long A, int atype, int lda, long long sA,
                  unsigned long long B, int btype, int ldb, long long sB, float beta,
                  unsigned long long C, int ctype, int ldc, long long sC, int batch, int compute, int algo) {
	int r = ((fn_i_pv)setCurrent)(ctx);
	if (r) return -r;
	return ((fn_i_gemm)f)(handle, ta, tb, m, n, k, &alpha, (const void*)A, atype, lda, sA, (const void*)B, btype,
	                      ldb, sB, &beta, (void*)C, ctype, ldc, sC, batch, compute, algo);
}
void* hx_dlopen(const char* path, int global) {
	return dlopen(path, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL));
}

int c_set_workspace(void* f, void* h, unsigned long long ws, size_t n) {
	return ((fn_i_pv_pv_sz)f)(h, (void*)ws, n);
}
