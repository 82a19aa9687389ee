package onnxruntime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibraryEnv names the environment variable that points at libonnxruntime.so.
const LibraryEnv = "HELIX_ONNXRUNTIME_LIB"

const libraryName = "libonnxruntime.so"

// ErrLibraryNotFound is wrapped by FindLibrary when no place holds the library.
var ErrLibraryNotFound = errors.New("libonnxruntime.so not found")

// systemLibraryDirs are the usual places the dynamic loader looks besides
// LD_LIBRARY_PATH.
var systemLibraryDirs = []string{
	"/usr/local/lib",
	"/usr/lib/x86_64-linux-gnu",
	"/usr/lib/aarch64-linux-gnu",
	"/usr/lib64",
	"/usr/lib",
}

// FindLibrary returns the path of libonnxruntime.so, looking in order at
// $HELIX_ONNXRUNTIME_LIB, <exe dir>/lib, <exe dir>/../lib,
// <exe dir>/../.deps/onnxruntime, .deps/onnxruntime in the working directory
// and each of its parents (so `go test` finds the repository's copy from any
// package), $LD_LIBRARY_PATH and the system library folders. The error names
// every place looked at.
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
	return "", fmt.Errorf("%w (%s is unset; looked at %s)", ErrLibraryNotFound, LibraryEnv, strings.Join(candidates, ", "))
}

func libraryCandidates() []string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		exeDir := filepath.Dir(exe)
		dirs = append(dirs,
			filepath.Join(exeDir, "lib"),
			filepath.Join(exeDir, "..", "lib"),
			filepath.Join(exeDir, "..", ".deps", "onnxruntime"),
		)
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			dirs = append(dirs, filepath.Join(dir, ".deps", "onnxruntime"))
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
