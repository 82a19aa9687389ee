package repository

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/helixflow/helixflow/internal/wire"
)

// ModelNames lists the model folders under root: every directory whose
// name does not start with a dot.
func ModelNames(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list model repository %s: %w", root, err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if e.IsDir() || isDirLink(filepath.Join(root, e.Name()), e) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func isDirLink(path string, e fs.DirEntry) bool {
	if e.Type()&fs.ModeSymlink == 0 {
		return false
	}
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// CheckModelName refuses a model folder the gateway could not route
// (wire.CheckModelName: no white space, '/', '*', "..", leading '.', ...),
// naming the folder and what is wrong, so that a worker never loads, and
// so never registers, a model that would fail the control plane's
// rebuilds.
func CheckModelName(name string) error {
	if err := wire.CheckModelName(name); err != nil {
		return fmt.Errorf("model folder %q: %w", name, err)
	}
	return nil
}

// Fingerprint summarizes a model folder's files (paths, sizes, modification
// times) so that polling can tell when a model changed on disk.
func Fingerprint(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%v\n", rel, info.Size(), info.ModTime().UnixNano(), d.IsDir())
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("fingerprint %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
