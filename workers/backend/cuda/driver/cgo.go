// Package driver loads NVIDIA's CUDA driver (libcuda.so.1), cuBLAS and
// NVRTC at run time with dlopen, so that the worker builds and runs on
// machines without them: a machine without a GPU gets an error naming
// every place searched, never a link failure. It binds the few calls the
// cuda backend makes; the C declarations (shim.h) are written from
// NVIDIA's documented signatures, no CUDA header is needed to build.
package driver

// #cgo LDFLAGS: -ldl
import "C"
