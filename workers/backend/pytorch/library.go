package pytorch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LibraryEnv names the environment variable that points at the shim,
// libhelix_torch.so.
const LibraryEnv = "HELIX_PYTORCH_LIB"

// LibraryName is the shim's file name; `make deps` builds it into
// .deps/pytorch/ (scripts/deps.sh), linked against the pinned torch wheel's
// libtorch_cpu.so by absolute path.
const LibraryName = "libhelix_torch.so"

// ErrLibraryNotFound is wrapped by FindLibrary when no place holds the shim.
var ErrLibraryNotFound = errors.New(LibraryName + " not found")

var systemLibraryDirs = []string{
	"/usr/local/lib",
	"/usr/lib/x86_64-linux-gnu",
	"/usr/lib64",
	"/usr/lib",
}

// FindLibrary returns the path of libhelix_torch.so, looking in order at
// $HELIX_PYTORCH_LIB, <exe dir>/lib, <exe dir>/../lib,
// <exe dir>/../.deps/pytorch, .deps/pytorch in the working directory and
// each of its parents (so `go test` finds the repository's copy from any
// package), $LD_LIBRARY_PATH and the system library folders, as the
// onnxruntime backend looks for its library. The error names every place
// looked at.
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
	return "", fmt.Errorf("%w (`make deps` builds it into .deps/pytorch; %s is unset; looked at %s)",
		ErrLibraryNotFound, LibraryEnv, strings.Join(candidates, ", "))
}

func libraryCandidates() []string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		exeDir := filepath.Dir(exe)
		dirs = append(dirs,
			filepath.Join(exeDir, "lib"),
			filepath.Join(exeDir, "..", "lib"),
			filepath.Join(exeDir, "..", ".deps", "pytorch"),
		)
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			dirs = append(dirs, filepath.Join(dir, ".deps", "pytorch"))
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
		paths[i] = filepath.Join(filepath.Clean(d), LibraryName)
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
