package driver

// #include <stdlib.h>
// #include "shim.h"
import "C"

import (
	"fmt"
	"strings"
	"unsafe"
)

// NVRTCVersion is NVRTC's version.
func (l *Libs) NVRTCVersion() (major, minor int, err error) {
	var a, b C.int
	err = l.rtcErr("nvrtcVersion", C.c_i_pi_pi(l.rtc["nvrtcVersion"], &a, &b))
	return int(a), int(b), err
}

// CompileError is a compilation that failed, with NVRTC's log.
type CompileError struct {
	Err error
	Log string
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("%v:\n%s", e.Err, strings.TrimSpace(e.Log))
}

func (e *CompileError) Unwrap() error { return e.Err }

// CompileCUBIN compiles CUDA C source with NVRTC for compute capability
// major.minor and returns the CUBIN (machine code the driver loads
// without a JIT).
func (l *Libs) CompileCUBIN(source, name string, major, minor int, extra ...string) ([]byte, error) {
	csrc := C.CString(source)
	defer C.free(unsafe.Pointer(csrc))
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var prog unsafe.Pointer
	if err := l.rtcErr("nvrtcCreateProgram", C.c_i_create_prog(l.rtc["nvrtcCreateProgram"], &prog, csrc, cname)); err != nil {
		return nil, err
	}
	defer C.c_i_ppv(l.rtc["nvrtcDestroyProgram"], &prog)
	opts := append([]string{fmt.Sprintf("--gpu-architecture=sm_%d%d", major, minor)}, extra...)
	copts := make([]*C.char, len(opts))
	for i, o := range opts {
		copts[i] = C.CString(o)
		defer C.free(unsafe.Pointer(copts[i]))
	}
	cArr := C.malloc(C.size_t(8 * len(copts)))
	defer C.free(cArr)
	copy(unsafe.Slice((**C.char)(cArr), len(copts)), copts)
	rc := C.c_i_compile(l.rtc["nvrtcCompileProgram"], prog, C.int(len(opts)), (**C.char)(cArr))
	var logSize C.size_t
	var log string
	if C.c_i_pv_psz(l.rtc["nvrtcGetProgramLogSize"], prog, &logSize) == 0 && logSize > 1 {
		buf := C.malloc(logSize)
		if C.c_i_pv_pc(l.rtc["nvrtcGetProgramLog"], prog, (*C.char)(buf)) == 0 {
			log = C.GoString((*C.char)(buf))
		}
		C.free(buf)
	}
	if err := l.rtcErr("nvrtcCompileProgram("+strings.Join(opts, " ")+")", rc); err != nil {
		return nil, &CompileError{Err: err, Log: log}
	}
	var size C.size_t
	if err := l.rtcErr("nvrtcGetCUBINSize", C.c_i_pv_psz(l.rtc["nvrtcGetCUBINSize"], prog, &size)); err != nil {
		return nil, err
	}
	buf := C.malloc(size)
	defer C.free(buf)
	if err := l.rtcErr("nvrtcGetCUBIN", C.c_i_pv_pc(l.rtc["nvrtcGetCUBIN"], prog, (*C.char)(buf))); err != nil {
		return nil, err
	}
	return C.GoBytes(buf, C.int(size)), nil
}
