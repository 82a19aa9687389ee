package mailpitbin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	write := func(t *testing.T, path string, mode os.FileMode) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string) (env, want string)
		wantErr string
	}{
		{"the built binary", func(t *testing.T, root string) (string, string) {
			return "", write(t, filepath.Join(root, Path), 0o755)
		}, ""},
		{"the variable wins", func(t *testing.T, root string) (string, string) {
			write(t, filepath.Join(root, Path), 0o755)
			p := write(t, filepath.Join(root, "my-mailpit"), 0o755)
			return p, p
		}, ""},
		{"the variable names a file that is not executable", func(t *testing.T, root string) (string, string) {
			return write(t, filepath.Join(root, "my-mailpit"), 0o644), ""
		}, "is not an executable file"},
		{"the built file is not executable", func(t *testing.T, root string) (string, string) {
			write(t, filepath.Join(root, Path), 0o644)
			return "", ""
		}, "make deps"},
		{"none", func(t *testing.T, root string) (string, string) { return "", "" }, "make deps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			env, want := tt.setup(t, root)
			t.Setenv(Env, env)
			got, err := Find(root)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Find: %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != want {
				t.Fatalf("Find: %q, %v; want %q", got, err, want)
			}
		})
	}
}
