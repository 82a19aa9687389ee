package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunStopsBeforeStarting: help, --version and bad flags end run with
// their exit codes, and a repository without its binaries or models is
// refused with what to run, before anything is started or locked.
func TestRunStopsBeforeStarting(t *testing.T) {
	root := t.TempDir()
	for _, tt := range []struct {
		name string
		args []string
		code int
	}{
		{"help", []string{"-h"}, 0},
		{"version", []string{"--version"}, 0},
		{"bad flag", []string{"--no-such-flag"}, 2},
		{"nothing built", []string{"-root", root}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code := run(tt.args); code != tt.code {
				t.Fatalf("run(%q) = %d, want %d", tt.args, code, tt.code)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(root, ".helix")); !os.IsNotExist(err) {
		t.Fatalf("a refused run left state behind: %v", err)
	}
}

func TestCheckBuilt(t *testing.T) {
	root := t.TempDir()
	touch := func(rel string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	want := func(sub string) {
		t.Helper()
		err := checkBuilt(root)
		if (sub == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), sub)) {
			t.Fatalf("checkBuilt = %v, want %q", err, sub)
		}
	}
	want("bin/helix-authz is missing (run make build)")
	for _, b := range []string{"helix-authz", "helix-xds", "helix-worker", "helixctl"} {
		touch(filepath.Join("bin", b))
	}
	want("models/ is missing (run make models)")
	touch("models/simple/config.pbtxt")
	want("")
}
