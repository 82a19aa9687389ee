package tensorflow

import (
	"fmt"
	"os"
	"sync"

	"github.com/helixflow/helixflow/workers/backend/libsearch"
)

// LibraryEnv names the environment variable that points at
// libtensorflow_cc.so.2 (its folder must also hold
// libtensorflow_framework.so.2, as the wheel's tensorflow/ folder does).
const LibraryEnv = "HELIX_TENSORFLOW_LIB"

// ErrLibraryNotFound is wrapped when no place holds the library (it is
// libsearch.ErrNotFound).
var ErrLibraryNotFound = libsearch.ErrNotFound

var library = libsearch.Library{
	Name: "libtensorflow_cc.so.2",
	Env:  LibraryEnv,
	Deps: "tensorflow",
	Hint: "make deps installs it",
}

// FindLibrary returns the path of libtensorflow_cc.so.2, looking in order at
// $HELIX_TENSORFLOW_LIB, <exe dir>/lib, <exe dir>/../lib,
// <exe dir>/../.deps/tensorflow, .deps/tensorflow in the working directory
// and each of its parents (make deps links it to the tensorflow-cpu wheel's
// folder in .venv), $LD_LIBRARY_PATH and the system library folders
// (libsearch.Library.Find). The error names every place looked at.
func FindLibrary() (string, error) { return library.Find("") }

// The C API's symbols are process-global: the library is opened once and
// stays (TensorFlow cannot be unloaded cleanly). A failed open is retried
// on the next use, so that installing TensorFlow needs no worker restart.
var lib struct {
	mu      sync.Mutex
	path    string
	version string
}

// openLibrary loads the library from path ("" : FindLibrary's) unless it
// is loaded, and returns the loaded path and TensorFlow's version.
func openLibrary(path string) (loaded, version string, err error) {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.path != "" {
		if path != "" && path != lib.path {
			return "", "", fmt.Errorf("tensorflow is already loaded from %s in this process; cannot also load %s", lib.path, path)
		}
		return lib.path, lib.version, nil
	}
	if path, err = library.Find(path); err != nil {
		return "", "", err
	}
	// TensorFlow's C++ logging writes INFO lines (oneDNN notices) to
	// stderr at load; keep warnings and errors unless the operator chose.
	if _, ok := os.LookupEnv("TF_CPP_MIN_LOG_LEVEL"); !ok {
		_ = os.Setenv("TF_CPP_MIN_LOG_LEVEL", "1")
	}
	version, err = loadLibrary(path)
	if err != nil {
		return "", "", fmt.Errorf("loading %s: %w", path, err)
	}
	lib.path, lib.version = path, version
	return path, version, nil
}
