package driver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/testdeps"
)

func reset(t *testing.T) {
	t.Helper()
	loaded.Lock()
	loaded.libs = nil
	loaded.Unlock()
	initOnce.Lock()
	initOnce.done = false
	initOnce.Unlock()
	t.Cleanup(func() {
		loaded.Lock()
		loaded.libs = nil
		loaded.Unlock()
		initOnce.Lock()
		initOnce.done = false
		initOnce.Unlock()
	})
}

// stubLibrary builds a shared library exporting the named functions (each
// returning rc), plus cuGetErrorName/cuGetErrorString that describe 100.
func stubLibrary(t *testing.T, dir, soname string, symbols []string, rc int, skip string) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		testdeps.Missing(t, "gcc not found (cgo needs it too)")
	}
	var b strings.Builder
	for _, s := range symbols {
		name := strings.Split(s, "|")[0]
		switch {
		case name == skip:
			continue
		case name == "cuGetErrorName":
			b.WriteString("int cuGetErrorName(int e, const char** s) { *s = e == 100 ? \"CUDA_ERROR_NO_DEVICE\" : \"CUDA_ERROR_UNKNOWN\"; return 0; }\n")
		case name == "cuGetErrorString":
			b.WriteString("int cuGetErrorString(int e, const char** s) { *s = \"no CUDA-capable device is detected\"; return 0; }\n")
		default:
			fmt.Fprintf(&b, "int %s(void) { return %d; }\n", name, rc)
		}
	}
	src := filepath.Join(dir, soname+".c")
	if err := os.WriteFile(src, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("gcc", "-shared", "-fPIC", "-o", filepath.Join(dir, soname), src).CombinedOutput()
	if err != nil {
		t.Fatalf("building %s: %v\n%s", soname, err, out)
	}
}

func TestLoadNamesEveryPlaceSearched(t *testing.T) {
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libcuda.so.1"); err == nil {
		t.Skip("this machine has a CUDA driver")
	}
	reset(t)
	dir := t.TempDir()
	_, err := Load(Config{SearchDirs: []string{dir}})
	if !errors.Is(err, ErrLibraryNotFound) {
		t.Fatalf("Load = %v, want ErrLibraryNotFound", err)
	}
	for _, want := range []string{"the CUDA driver", "libcuda.so.1", filepath.Join(dir, "libcuda.so.1"), "NVIDIA driver"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestLoadStubs(t *testing.T) {
	tests := []struct {
		name string
		// build the libraries into dir; missing says which function the
		// CUDA driver stub leaves out.
		missing string
		noBLAS  bool
		want    []string
		wantIs  error
	}{
		{name: "missing cuBLAS", noBLAS: true, wantIs: ErrLibraryNotFound, want: []string{"cuBLAS", "libcublas.so.12"}},
		{name: "old driver", missing: "cuGraphInstantiateWithFlags", wantIs: ErrSymbolMissing, want: []string{"cuGraphInstantiateWithFlags", "libcuda.so.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reset(t)
			dir := t.TempDir()
			stubLibrary(t, dir, "libcuda.so.1", cudaSymbols, 0, tt.missing)
			if !tt.noBLAS {
				stubLibrary(t, dir, "libcublas.so.12", cublasSymbols, 0, "")
			}
			stubLibrary(t, dir, "libnvrtc.so.12", nvrtcSymbols, 0, "")
			_, err := Load(Config{SearchDirs: []string{dir}})
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Load = %v, want %v", err, tt.wantIs)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestDriverErrorsAreDescribed loads stub libraries whose cuInit fails as
// a machine without a GPU does, and checks that the error carries the
// driver's own name and description of the code.
func TestDriverErrorsAreDescribed(t *testing.T) {
	reset(t)
	dir := t.TempDir()
	stubLibrary(t, dir, "libcuda.so.1", cudaSymbols, 100, "")
	stubLibrary(t, dir, "libcublasLt.so.12", []string{"cublasLtCreate"}, 0, "")
	stubLibrary(t, dir, "libcublas.so.12", cublasSymbols, 0, "")
	stubLibrary(t, dir, "libnvrtc.so.12", nvrtcSymbols, 0, "")
	libs, err := Load(Config{SearchDirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	if libs.CUDAPath != filepath.Join(dir, "libcuda.so.1") || libs.CUBLASPath != filepath.Join(dir, "libcublas.so.12") {
		t.Errorf("loaded %s and %s, want the stubs in %s", libs.CUDAPath, libs.CUBLASPath, dir)
	}
	err = libs.Init()
	var e *Error
	if !errors.As(err, &e) || e.Code != 100 {
		t.Fatalf("Init = %v, want a CUDA error 100", err)
	}
	if got := err.Error(); got != "cuInit: CUDA_ERROR_NO_DEVICE (100): no CUDA-capable device is detected" {
		t.Errorf("error %q", got)
	}
	if _, err := libs.Open(0); err == nil {
		t.Error("Open succeeded after cuInit failed")
	}
}

func TestOutOfMemoryIs(t *testing.T) {
	for _, tt := range []struct {
		e    *Error
		want bool
	}{
		{&Error{Lib: "CUDA", Code: 2}, true},
		{&Error{Lib: "cuBLAS", Code: 3}, true},
		{&Error{Lib: "CUDA", Code: 3}, false},
	} {
		if got := errors.Is(fmt.Errorf("wrapped: %w", tt.e), ErrOutOfMemory); got != tt.want {
			t.Errorf("%+v: Is(ErrOutOfMemory) = %v", tt.e, got)
		}
	}
}

func TestFormatUUID(t *testing.T) {
	b := []byte{0x8a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71, 0x82, 0x93, 0xa4, 0xb5, 0xc6, 0xd7, 0xe8, 0xf9}
	if got, want := FormatUUID(b), "GPU-8a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"; got != want {
		t.Errorf("FormatUUID = %s, want %s", got, want)
	}
}

func TestSearchDirsFromEnv(t *testing.T) {
	got := SearchDirsFromEnv("/a::/b/lib:")
	if strings.Join(got, ",") != "/a,/b/lib" {
		t.Errorf("SearchDirsFromEnv = %v", got)
	}
}
