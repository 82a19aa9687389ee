package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old      os.FileMode // 0: no file before
		mode     os.FileMode
		contents string
	}{
		{"new private file", 0, 0o600, "secret"},
		{"new public file", 0, 0o644, "cert"},
		{"replaces a looser file with 0600", 0o644, 0o600, "key"},
		{"replaces a private file with 0644", 0o600, 0o644, "config"},
		{"empty", 0o644, 0o644, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tc.old != 0 {
				if err := os.WriteFile(path, []byte("old contents, longer than the new"), tc.old); err != nil {
					t.Fatal(err)
				}
			}
			if err := Write(path, []byte(tc.contents), tc.mode); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != tc.contents {
				t.Errorf("contents %q, %v; want %q", b, err, tc.contents)
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != tc.mode {
				t.Errorf("mode %v, %v; want %v", fi.Mode().Perm(), err, tc.mode)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("%d files in the folder, want 1 (no temporary file left)", len(ents))
			}
		})
	}
}

// A failed write names the path and leaves nothing behind.
func TestWriteError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "f")
	err := Write(path, []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Write into a missing folder: %v, want an error naming %s", err, path)
	}
	// The target is a folder: the rename fails after the temporary file
	// was written; it must be removed.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "f"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(dir, "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("Write over a folder succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d entries after a failed write, want 1 (the folder)", len(ents))
	}
}
