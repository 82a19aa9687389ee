package pytorch

/*
#cgo CFLAGS: -I${SRCDIR}/shim
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include "helix_torch.h"

// The shim is opened with dlopen, so that the worker builds and runs where
// libtorch is missing; these trampolines call through the pointers dlsym
// found (cgo cannot call a C function pointer directly).
typedef struct {
	int32_t (*abi)(void);
	const char *(*version)(void);
	void (*free_)(void *);
	int32_t (*cuda_devices)(char **);
	char *(*load)(const char *, int32_t, helix_torch_module **);
	void (*unload)(helix_torch_module *);
	char *(*signature)(helix_torch_module *, char **);
	char *(*forward)(helix_torch_module *, const helix_torch_tensor *, int32_t, int32_t,
	                 helix_torch_output *, int32_t, int32_t *);
	void (*free_outputs)(helix_torch_output *, int32_t);
} helix_torch_api;

static const char *helix_open(const char *path, helix_torch_api *api) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) return dlerror();
#define HELIX_SYM(field, name) \
	if ((*(void **)(&api->field) = dlsym(h, name)) == NULL) return dlerror();
	HELIX_SYM(abi, "helix_torch_abi")
	HELIX_SYM(version, "helix_torch_version")
	HELIX_SYM(free_, "helix_torch_free")
	HELIX_SYM(cuda_devices, "helix_torch_cuda_devices")
	HELIX_SYM(load, "helix_torch_load")
	HELIX_SYM(unload, "helix_torch_unload")
	HELIX_SYM(signature, "helix_torch_signature")
	HELIX_SYM(forward, "helix_torch_forward")
	HELIX_SYM(free_outputs, "helix_torch_free_outputs")
#undef HELIX_SYM
	return NULL;
}

static int32_t helix_abi(helix_torch_api *a) { return a->abi(); }
static const char *helix_version(helix_torch_api *a) { return a->version(); }
static void helix_free(helix_torch_api *a, void *p) { a->free_(p); }
static int32_t helix_cuda_devices(helix_torch_api *a, char **reason) { return a->cuda_devices(reason); }
static char *helix_load(helix_torch_api *a, const char *path, int32_t device, helix_torch_module **out) {
	return a->load(path, device, out);
}
static void helix_unload(helix_torch_api *a, helix_torch_module *m) { a->unload(m); }
static char *helix_signature(helix_torch_api *a, helix_torch_module *m, char **json) { return a->signature(m, json); }
static char *helix_forward(helix_torch_api *a, helix_torch_module *m, const helix_torch_tensor *in, int32_t n_in,
                           int32_t threads, helix_torch_output *outs, int32_t max_outs, int32_t *n_outs) {
	return a->forward(m, in, n_in, threads, outs, max_outs, n_outs);
}
static void helix_free_outputs(helix_torch_api *a, helix_torch_output *outs, int32_t n) { a->free_outputs(outs, n); }
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// shimABI must equal HELIX_TORCH_ABI of the shim that loads.
const shimABI = 1

// maxOutputs bounds how many tensors one forward() may return.
const maxOutputs = 64

// maxRank is the shim's bound on an output's dimensions.
const maxRank = 16

// lib is the loaded shim. dlopen is process-wide, so one per process.
type lib struct {
	api     C.helix_torch_api
	path    string
	version string
}

var loaded struct {
	mu  sync.Mutex
	lib *lib
	err error
}

// openLibrary loads the shim at path (once per process; a second path is
// refused). A failure is kept: dlopen does not get better by retrying.
func openLibrary(path string) (*lib, error) {
	loaded.mu.Lock()
	defer loaded.mu.Unlock()
	if loaded.lib != nil {
		if loaded.lib.path != path {
			return nil, fmt.Errorf("the pytorch shim is already loaded from %s in this process; cannot also load %s", loaded.lib.path, path)
		}
		return loaded.lib, nil
	}
	l := &lib{path: path}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	if msg := C.helix_open(cpath, &l.api); msg != nil {
		return nil, fmt.Errorf("loading %s: %s", path, C.GoString(msg))
	}
	if abi := int(C.helix_abi(&l.api)); abi != shimABI {
		return nil, fmt.Errorf("%s has shim ABI %d, this worker needs %d (rebuild it: make deps)", path, abi, shimABI)
	}
	l.version = C.GoString(C.helix_version(&l.api))
	loaded.lib = l
	return l, nil
}

// message turns a shim error (malloc'd) into a Go error and frees it.
func (l *lib) message(msg *C.char) error {
	if msg == nil {
		return nil
	}
	defer C.helix_free(&l.api, unsafe.Pointer(msg))
	return errors.New(C.GoString(msg))
}

func (l *lib) cudaDevices() (int, string) {
	var reason *C.char
	n := int(C.helix_cuda_devices(&l.api, &reason))
	why := ""
	if reason != nil {
		why = C.GoString(reason)
		C.helix_free(&l.api, unsafe.Pointer(reason))
	}
	return n, why
}

// module is one loaded TorchScript module.
type module struct {
	lib *lib
	ptr *C.helix_torch_module
}

// load reads a TorchScript file onto the CPU (device < 0) or a GPU.
func (l *lib) load(path string, device int) (*module, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var ptr *C.helix_torch_module
	if err := l.message(C.helix_load(&l.api, cpath, C.int32_t(device), &ptr)); err != nil {
		return nil, err
	}
	return &module{lib: l, ptr: ptr}, nil
}

func (m *module) close() {
	if m.ptr != nil {
		C.helix_unload(&m.lib.api, m.ptr)
		m.ptr = nil
	}
}

// signature is forward()'s schema as the shim reports it.
type signature struct {
	Args []struct {
		Name    string `json:"name"`
		Type    string `json:"type"`
		Default bool   `json:"default"`
	} `json:"args"`
	Returns string `json:"returns"`
}

func (m *module) signature() (signature, error) {
	var js *C.char
	if err := m.lib.message(C.helix_signature(&m.lib.api, m.ptr, &js)); err != nil {
		return signature{}, err
	}
	defer C.helix_free(&m.lib.api, unsafe.Pointer(js))
	var sig signature
	if err := json.Unmarshal([]byte(C.GoString(js)), &sig); err != nil {
		return signature{}, fmt.Errorf("reading forward()'s signature from the shim: %w", err)
	}
	return sig, nil
}

// runner holds the C memory one instance's forward calls reuse: the input
// descriptors, their shapes and the output slots. Go memory may not be
// stored in C memory unless pinned, so the input data is pinned per call.
type runner struct {
	in     *C.helix_torch_tensor
	shapes *C.int64_t
	out    *C.helix_torch_output
	nIn    int
}

func newRunner(nIn int) *runner {
	r := &runner{nIn: nIn}
	if nIn > 0 {
		r.in = (*C.helix_torch_tensor)(C.calloc(C.size_t(nIn), C.size_t(unsafe.Sizeof(C.helix_torch_tensor{}))))
		r.shapes = (*C.int64_t)(C.calloc(C.size_t(nIn*maxRank), 8))
	}
	r.out = (*C.helix_torch_output)(C.calloc(maxOutputs, C.size_t(unsafe.Sizeof(C.helix_torch_output{}))))
	return r
}

func (r *runner) free() {
	C.free(unsafe.Pointer(r.in))
	C.free(unsafe.Pointer(r.shapes))
	C.free(unsafe.Pointer(r.out))
	r.in, r.shapes, r.out = nil, nil, nil
}

// hostTensor is one input as the shim takes it: a datatype code, a shape
// and data that stays put through the call.
type hostTensor struct {
	code  int32
	shape []int64
	data  []byte
}

// hostOutput is one output, copied out of libtorch's memory.
type hostOutput struct {
	code  int32
	shape []int64
	data  []byte
}

// forward runs the module on args (in forward()'s order).
func (m *module) forward(r *runner, args []hostTensor, threads int) ([]hostOutput, error) {
	if len(args) > r.nIn {
		return nil, fmt.Errorf("internal: %d inputs for a runner of %d", len(args), r.nIn)
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	ins := unsafe.Slice(r.in, r.nIn)
	shapes := unsafe.Slice(r.shapes, r.nIn*maxRank)
	for i, a := range args {
		if len(a.shape) > maxRank {
			return nil, fmt.Errorf("input %d has %d dimensions, at most %d are supported", i, len(a.shape), maxRank)
		}
		for j, d := range a.shape {
			shapes[i*maxRank+j] = C.int64_t(d)
		}
		ins[i].dtype = C.int32_t(a.code)
		ins[i].ndim = C.int32_t(len(a.shape))
		ins[i].shape = &shapes[i*maxRank]
		ins[i].data = nil
		if len(a.data) > 0 {
			pin.Pin(&a.data[0])
			ins[i].data = unsafe.Pointer(&a.data[0])
		}
		ins[i].nbytes = C.int64_t(len(a.data))
	}
	var n C.int32_t
	if err := m.lib.message(C.helix_forward(&m.lib.api, m.ptr, r.in, C.int32_t(len(args)), C.int32_t(threads),
		r.out, maxOutputs, &n)); err != nil {
		return nil, err
	}
	outs := unsafe.Slice(r.out, int(n))
	defer C.helix_free_outputs(&m.lib.api, r.out, n)
	result := make([]hostOutput, len(outs))
	for i := range outs {
		o := &outs[i]
		shape := make([]int64, int(o.ndim))
		for j := range shape {
			shape[j] = int64(o.shape[j])
		}
		result[i] = hostOutput{code: int32(o.dtype), shape: shape, data: bytes.Clone(unsafe.Slice((*byte)(o.data), int(o.nbytes)))}
	}
	return result, nil
}
