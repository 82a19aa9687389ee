// Package libsearch finds a backend's shared library (ONNX Runtime,
// TensorFlow, the libtorch shim), so that every backend looks in the same
// places, in the same order, and names them all when none holds it.
package libsearch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotFound is wrapped when no place holds the library.
var ErrNotFound = errors.New("not found")

// systemDirs are the usual places the dynamic loader looks besides
// LD_LIBRARY_PATH.
var systemDirs = []string{
	"/usr/local/lib",
	"/usr/lib/x86_64-linux-gnu",
	"/usr/lib/aarch64-linux-gnu",
	"/usr/lib64",
	"/usr/lib",
}

// Library describes one shared library a backend opens.
type Library struct {
	// Name is the file looked for, e.g. "libonnxruntime.so".
	Name string
	// Env names the environment variable that, when set, is the path.
	Env string
	// Deps is the folder under .deps/ that `make deps` fills, e.g.
	// "onnxruntime".
	Deps string
	// Hint opens the not-found error's parenthesis, saying how to install
	// the library; it may be empty.
	Hint string
}

// Find returns the library's path: explicit when set (a flag or an
// option), else $Env when set, else the first of these folders that holds
// Name: <exe dir>/lib, <exe dir>/../lib, <exe dir>/../.deps/<Deps>,
// .deps/<Deps> in the working directory and each of its parents (so `go
// test` finds the repository's copy from any package), each folder of
// $LD_LIBRARY_PATH and the system library folders. An explicit or $Env
// path must be a file; the not-found error wraps ErrNotFound and names
// every place looked at.
func (l Library) Find(explicit string) (string, error) {
	return l.find(explicit, hostPlaces(l.Env))
}

// places is what the search reads from the process and the machine, apart
// so that tests can set it.
type places struct {
	env           string // $Env's value
	exeDir, wd    string // "" where unknown
	ldLibraryPath string
	system        []string
}

func hostPlaces(env string) places {
	p := places{ldLibraryPath: os.Getenv("LD_LIBRARY_PATH"), system: systemDirs}
	if env != "" {
		p.env = os.Getenv(env)
	}
	if exe, err := os.Executable(); err == nil {
		p.exeDir = filepath.Dir(exe)
	}
	if wd, err := os.Getwd(); err == nil {
		p.wd = wd
	}
	return p
}

func (l Library) find(explicit string, at places) (string, error) {
	if l.Name == "" || l.Deps == "" {
		return "", errors.New("libsearch: the library's Name and Deps must be set")
	}
	// The stat error already names the path; callers say whose it is.
	if explicit != "" {
		if err := IsFile(explicit); err != nil {
			return "", err
		}
		return explicit, nil
	}
	if at.env != "" {
		if err := IsFile(at.env); err != nil {
			return "", fmt.Errorf("%s=%s: %w", l.Env, at.env, err)
		}
		return at.env, nil
	}
	candidates := l.candidates(at)
	for _, p := range candidates {
		if IsFile(p) == nil {
			return p, nil
		}
	}
	// The hint comes first: the list of places can be long.
	var msg strings.Builder
	if l.Hint != "" {
		fmt.Fprintf(&msg, "%s; ", l.Hint)
	}
	if l.Env != "" {
		fmt.Fprintf(&msg, "%s is unset; ", l.Env)
	}
	fmt.Fprintf(&msg, "looked at %s", strings.Join(candidates, ", "))
	return "", fmt.Errorf("%s %w (%s)", l.Name, ErrNotFound, msg.String())
}

func (l Library) candidates(at places) []string {
	var dirs []string
	if at.exeDir != "" {
		dirs = append(dirs,
			filepath.Join(at.exeDir, "lib"),
			filepath.Join(at.exeDir, "..", "lib"),
			filepath.Join(at.exeDir, "..", ".deps", l.Deps),
		)
	}
	if at.wd != "" {
		for dir := at.wd; ; dir = filepath.Dir(dir) {
			dirs = append(dirs, filepath.Join(dir, ".deps", l.Deps))
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	for _, d := range filepath.SplitList(at.ldLibraryPath) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, at.system...)
	paths := make([]string, len(dirs))
	for i, d := range dirs {
		paths[i] = filepath.Join(filepath.Clean(d), l.Name)
	}
	return paths
}

// IsFile returns nil when path is a file (or a link to one); a directory
// wraps fs.ErrInvalid, a missing path fs.ErrNotExist.
func IsFile(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() {
		return fmt.Errorf("%s is a directory: %w", path, fs.ErrInvalid)
	}
	return nil
}
