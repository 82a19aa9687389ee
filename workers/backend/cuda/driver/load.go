package driver

// #include <stdlib.h>
// #include <dlfcn.h>
// #include "shim.h"
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// ErrLibraryNotFound is wrapped when a library cannot be loaded from any
// place searched.
var ErrLibraryNotFound = errors.New("library not found")

// ErrSymbolMissing is wrapped when a loaded library lacks a function the
// backend calls (a version too old).
var ErrSymbolMissing = errors.New("function missing from library")

// The libraries, newest first among the versions the backend can use.
var (
	cudaNames   = []string{"libcuda.so.1"}
	cublasNames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}
	// cublasLtNames are loaded first from the same folder as cuBLAS, which
	// needs them and may not find them on its own.
	cublasLtNames = []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11"}
	nvrtcNames    = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so.11.1", "libnvrtc.so.11.0"}
)

// systemDirs are searched after Config.SearchDirs and the dynamic loader's
// own search (LD_LIBRARY_PATH, ld.so.cache).
var systemDirs = []string{"/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/wsl/lib"}

// Config says where to look for the libraries.
type Config struct {
	// SearchDirs are searched first, in order (e.g. the lib folders of
	// NVIDIA's pip wheels: site-packages/nvidia/cublas/lib and
	// site-packages/nvidia/cuda_nvrtc/lib).
	SearchDirs []string
}

// library is one dlopen'ed library.
type library struct {
	name   string // what it is ("cuBLAS")
	path   string // what was opened
	handle unsafe.Pointer
}

// open tries each candidate (a folder/name path or a bare name for the
// dynamic loader) and returns the first that loads; the error lists every
// candidate with why it failed.
func open(what string, names []string, dirs []string, global bool) (*library, error) {
	var tried []string
	try := func(path string) *library {
		c := C.CString(path)
		defer C.free(unsafe.Pointer(c))
		g := C.int(0)
		if global {
			g = 1
		}
		h := C.hx_dlopen(c, g)
		if h == nil {
			msg := C.GoString(C.dlerror())
			if strings.Contains(msg, "No such file") {
				msg = "not found"
			}
			tried = append(tried, fmt.Sprintf("%s (%s)", path, msg))
			return nil
		}
		return &library{name: what, path: path, handle: h}
	}
	for _, d := range dirs {
		for _, n := range names {
			p := filepath.Join(d, n)
			if _, err := os.Stat(p); err != nil {
				tried = append(tried, p+" (not found)")
				continue
			}
			if l := try(p); l != nil {
				return l, nil
			}
		}
	}
	for _, n := range names {
		if l := try(n); l != nil {
			return l, nil
		}
	}
	for _, d := range systemDirs {
		for _, n := range names {
			p := filepath.Join(d, n)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if l := try(p); l != nil {
				return l, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %s (%s): tried %s", ErrLibraryNotFound, what, strings.Join(names, ", "), strings.Join(dedupe(tried), "; "))
}

func dedupe(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func (l *library) sym(name string) (unsafe.Pointer, error) {
	c := C.CString(name)
	defer C.free(unsafe.Pointer(c))
	p := C.dlsym(l.handle, c)
	if p == nil {
		return nil, fmt.Errorf("%w: %s in %s (%s)", ErrSymbolMissing, name, l.path, l.name)
	}
	return p, nil
}

// syms resolves a list of functions; the first of alternatives that
// exists wins (for calls renamed between versions).
func (l *library) syms(out map[string]unsafe.Pointer, names ...string) error {
	for _, n := range names {
		alts := strings.Split(n, "|")
		var err error
		for _, a := range alts {
			var p unsafe.Pointer
			if p, err = l.sym(a); err == nil {
				out[alts[0]] = p
				break
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// preload opens, with global visibility, the libraries a library in dir
// depends on but may not find itself.
func preload(dir string, patterns []string) {
	for _, pat := range patterns {
		matches, _ := filepath.Glob(filepath.Join(dir, pat))
		slices.Sort(matches)
		for _, m := range matches {
			c := C.CString(m)
			C.hx_dlopen(c, 1)
			C.free(unsafe.Pointer(c))
		}
	}
}

// Libs are the loaded libraries, shared by the process.
type Libs struct {
	CUDAPath, CUBLASPath, NVRTCPath string
	cu, blas, rtc                   map[string]unsafe.Pointer
}

var loaded struct {
	sync.Mutex
	libs *Libs
}

// Load opens the CUDA driver, cuBLAS and NVRTC (once per process; a failed
// Load is retried by the next call, so a library installed later is found).
func Load(cfg Config) (*Libs, error) {
	loaded.Lock()
	defer loaded.Unlock()
	if loaded.libs != nil {
		return loaded.libs, nil
	}
	dirs := cfg.SearchDirs
	cu, err := open("the CUDA driver", cudaNames, dirs, false)
	if err != nil {
		return nil, fmt.Errorf("%w (is the NVIDIA driver installed?)", err)
	}
	libs := &Libs{CUDAPath: cu.path, cu: map[string]unsafe.Pointer{}, blas: map[string]unsafe.Pointer{}, rtc: map[string]unsafe.Pointer{}}
	if err := cu.syms(libs.cu, cudaSymbols...); err != nil {
		return nil, err
	}
	for _, d := range dirs {
		preload(d, cublasLtNames)
	}
	blas, err := open("cuBLAS", cublasNames, dirs, false)
	if err != nil {
		return nil, err
	}
	libs.CUBLASPath = blas.path
	if err := blas.syms(libs.blas, cublasSymbols...); err != nil {
		return nil, err
	}
	rtc, err := open("NVRTC", nvrtcNames, dirs, false)
	if err != nil {
		return nil, err
	}
	libs.NVRTCPath = rtc.path
	// NVRTC dlopens its builtins library by name at compile time; loading
	// it from NVRTC's folder first makes that name resolve.
	preload(filepath.Dir(rtc.path), []string{"libnvrtc-builtins.so*"})
	if err := rtc.syms(libs.rtc, nvrtcSymbols...); err != nil {
		return nil, err
	}
	loaded.libs = libs
	return libs, nil
}

// SearchDirsFromEnv splits a colon-separated folder list (as
// HELIX_CUDA_LIBRARY_PATH holds it), dropping empty entries.
func SearchDirsFromEnv(v string) []string {
	var out []string
	for _, d := range filepath.SplitList(v) {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}
