// C shims for the driver package: function pointer types for the
// libraries' calls and small functions that call through them (cgo cannot
// call a C function pointer directly).
#ifndef HELIX_DRIVER_SHIM_H
#define HELIX_DRIVER_SHIM_H
#include <stddef.h>

typedef int (*fn_i_u)(unsigned int);
typedef int (*fn_i_pi)(int*);
typedef int (*fn_i_pi_i)(int*, int);
typedef int (*fn_i_name)(char*, int, int);
typedef int (*fn_i_attr)(int*, int, int);
typedef int (*fn_i_uuid)(void*, int);
typedef int (*fn_i_totalmem)(size_t*, int);
typedef int (*fn_i_ppv_i)(void**, int);
typedef int (*fn_i_i)(int);
typedef int (*fn_i_pv)(void*);
typedef int (*fn_i_memgetinfo)(size_t*, size_t*);
typedef int (*fn_i_alloc)(unsigned long long*, size_t);
typedef int (*fn_i_ull)(unsigned long long);
typedef int (*fn_i_hostalloc)(void**, size_t, unsigned int);
typedef int (*fn_i_htod)(unsigned long long, const void*, size_t);
typedef int (*fn_i_htod_async)(unsigned long long, const void*, size_t, void*);
typedef int (*fn_i_dtoh_async)(void*, unsigned long long, size_t, void*);
typedef int (*fn_i_ppv_u)(void**, unsigned int);
typedef int (*fn_i_modload)(void**, const void*);
typedef int (*fn_i_getfn)(void**, void*, const char*);
typedef int (*fn_i_launch)(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*, void**, void**);
typedef int (*fn_i_pv_pv)(void*, void*);
typedef int (*fn_i_elapsed)(float*, void*, void*);
typedef int (*fn_i_pv_i)(void*, int);
typedef int (*fn_i_pv_ppv)(void*, void**);
typedef int (*fn_i_instantiate)(void**, void*, unsigned long long);
typedef int (*fn_i_errstr)(int, const char**);
typedef int (*fn_i_pv_pv_sz)(void*, void*, size_t);
typedef int (*fn_i_gemm)(void*, int, int, int, int, int, const void*, const void*, int, int, long long,
                         const void*, int, int, long long, const void*, void*, int, int, long long, int, int, int);
typedef const char* (*fn_s_i)(int);
typedef int (*fn_i_pi_pi)(int*, int*);
typedef int (*fn_i_create_prog)(void**, const char*, const char*, int, const char**, const char**);
typedef int (*fn_i_compile)(void*, int, const char**);
typedef int (*fn_i_pv_psz)(void*, size_t*);
typedef int (*fn_i_pv_pc)(void*, char*);

int c_i_u(void* f, unsigned int a);
int c_i_pi(void* f, int* a);
int c_i_pi_i(void* f, int* a, int b);
int c_i_name(void* f, char* a, int b, int c);
int c_i_attr(void* f, int* a, int b, int c);
int c_i_uuid(void* f, void* a, int b);
int c_i_totalmem(void* f, size_t* a, int b);
int c_i_ppv_i(void* f, void** a, int b);
int c_i_i(void* f, int a);
int c_i_pv(void* f, void* a);
int c_i_ppv(void* f, void** a);
int c_i_memgetinfo(void* f, size_t* a, size_t* b);
int c_i_alloc(void* f, unsigned long long* a, size_t b);
int c_i_ull(void* f, unsigned long long a);
int c_i_hostalloc(void* f, void** a, size_t b, unsigned int c);
int c_i_htod(void* f, unsigned long long a, const void* b, size_t c);
int c_i_ppv_u(void* f, void** a, unsigned int b);
int c_i_modload(void* f, void** a, const void* b);
int c_i_getfn(void* f, void** a, void* b, const char* c);
int c_i_pv_pv(void* f, void* a, void* b);
int c_i_elapsed(void* f, float* a, void* b, void* c);
int c_i_pv_i(void* f, void* a, int b);
int c_i_pv_ppv(void* f, void* a, void** b);
int c_i_instantiate(void* f, void** a, void* b, unsigned long long c);
int c_i_errstr(void* f, int a, const char** b);
int c_i_pv_pv_sz(void* f, void* a, void* b, size_t c);
const char* c_s_i(void* f, int a);
int c_i_pi_pi(void* f, int* a, int* b);
int c_i_create_prog(void* f, void** p, const char* src, const char* name);
int c_i_compile(void* f, void* p, int n, const char** opts);
int c_i_pv_psz(void* f, void* a, size_t* b);
int c_i_pv_pc(void* f, void* a, char* b);
int c_launch(void* setCurrent, void* ctx, void* f, void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, void* stream, void** params);
int c_htod_async(void* setCurrent, void* ctx, void* f, unsigned long long dst, const void* src, size_t n, void* stream);
int c_dtoh_async(void* setCurrent, void* ctx, void* f, void* dst, unsigned long long src, size_t n, void* stream);
int c_with_ctx_pv(void* setCurrent, void* ctx, void* f, void* a);
int c_with_ctx_pv_pv(void* setCurrent, void* ctx, void* f, void* a, void* b);
int c_gemm(void* setCurrent, void* ctx, void* f, void* handle, int ta, int tb, int m, int n, int k, float alpha, unsigned long long A, int atype, int lda, long long sA, unsigned long long B, int btype, int ldb, long long sB, float beta, unsigned long long C, int ctype, int ldc, long long sC, int batch, int compute, int algo);
void* hx_dlopen(const char* path, int global);
int c_set_workspace(void* f, void* h, unsigned long long ws, size_t n);
#endif
