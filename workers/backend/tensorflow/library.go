package tensorflow

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// LibraryEnv names the environment variable that points at
// libtensorflow_cc.so.2 (its folder must also hold
// libtensorflow_framework.so.2, as the wheel's tensorflow/ folder does).
const LibraryEnv = "HELIX_TENSORFLOW_LIB"

const libraryName = "libtensorflow_cc.so.2"

// ErrLibraryNotFound is wrapped when no place holds the library.
var ErrLibraryNotFound = errors.New(libraryName + " not found")

// systemLibraryDirs are the usual places the dynamic loader looks besides
// LD_LIBRARY_PATH.
var systemLibraryDirs = []string{
	"/usr/local/lib",
	"/usr/lib/x86_64-linux-gnu",
	"/usr/lib/aarch64-linux-gnu",
	"/usr/lib64",
	"/usr/lib",
}

// FindLibrary returns the path of libtensorflow_cc.so.2, looking in order at
// $HELIX_TENSORFLOW_LIB, <exe dir>/lib, <exe dir>/../lib,
// <exe dir>/../.deps/tensorflow, .deps/tensorflow in the working directory
// and each of its parents (make deps links it to the tensorflow-cpu wheel's
// folder in .venv), $LD_LIBRARY_PATH and the system library folders. The
// error names every place looked at.
func FindLibrary() (string, error) {
	if p := os.Getenv(LibraryEnv); p != "" {
		if err := isFile(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", LibraryEnv, p, err)
		}
		return p, nil
	}
	candidates := libraryCandidates()
	for _, p := range candidates {
		if isFile(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (%s is unset; looked at %s; make deps installs it)", ErrLibraryNotFound, LibraryEnv, strings.Join(candidates, ", "))
}

func libraryCandidates() []string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		exeDir := filepath.Dir(exe)
		dirs = append(dirs,
			filepath.Join(exeDir, "lib"),
			filepath.Join(exeDir, "..", "lib"),
			filepath.Join(exeDir, "..", ".deps", "tensorflow"),
		)
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			dirs = append(dirs, filepath.Join(dir, ".deps", "tensorflow"))
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	for _, d := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, systemLibraryDirs...)
	paths := make([]string, len(dirs))
	for i, d := range dirs {
		paths[i] = filepath.Join(filepath.Clean(d), libraryName)
	}
	return paths
}

func isFile(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() {
		return fmt.Errorf("%s is a directory: %w", path, fs.ErrInvalid)
	}
	return nil
}

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
	if path == "" {
		if path, err = FindLibrary(); err != nil {
			return "", "", err
		}
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
