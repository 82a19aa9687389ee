package onnxruntime

import (
	"fmt"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/helixflow/helixflow/workers/backend/libsearch"
)

// LibraryEnv names the environment variable that points at libonnxruntime.so.
const LibraryEnv = "HELIX_ONNXRUNTIME_LIB"

// ErrLibraryNotFound is wrapped by FindLibrary when no place holds the
// library (it is libsearch.ErrNotFound).
var ErrLibraryNotFound = libsearch.ErrNotFound

var library = libsearch.Library{
	Name: "libonnxruntime.so",
	Env:  LibraryEnv,
	Deps: "onnxruntime",
	Hint: "make deps installs it",
}

// FindLibrary returns the path of libonnxruntime.so, looking in order at
// $HELIX_ONNXRUNTIME_LIB, <exe dir>/lib, <exe dir>/../lib,
// <exe dir>/../.deps/onnxruntime, .deps/onnxruntime in the working directory
// and each of its parents, $LD_LIBRARY_PATH and the system library folders
// (libsearch.Library.Find). The error names every place looked at.
func FindLibrary() (string, error) { return library.Find("") }

// ORT's environment (and the loaded library) is process-global, so every
// Backend shares one, counted, and the last Close destroys it.
var env struct {
	mu   sync.Mutex
	refs int
	path string
}

func acquireEnv(path string) (version string, err error) {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.refs > 0 {
		if path != env.path {
			return "", fmt.Errorf("onnxruntime is already loaded from %s in this process; cannot also load %s", env.path, path)
		}
		env.refs++
		return ort.GetVersion(), nil
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(); err != nil {
		return "", fmt.Errorf("loading onnxruntime from %s: %w", path, err)
	}
	env.refs, env.path = 1, path
	return ort.GetVersion(), nil
}

func releaseEnv() error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.refs == 0 {
		return nil
	}
	env.refs--
	if env.refs > 0 {
		return nil
	}
	env.path = ""
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("destroying the onnxruntime environment: %w", err)
	}
	return nil
}
