package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder stands in for a test to see whether it was skipped or failed.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestMissingBinaries(t *testing.T) {
	old := versionedBins
	versionedBins = filepath.Join(t.TempDir(), "*", "bin")
	t.Cleanup(func() { versionedBins = old })
	t.Setenv("PATH", t.TempDir())

	_, err := FindBinaries()
	if !errors.Is(err, ErrNoPostgres) || !strings.Contains(err.Error(), versionedBins) {
		t.Fatalf("FindBinaries: %v, want ErrNoPostgres naming where it looked", err)
	}

	t.Setenv("CI", "")
	r := &recorder{TB: t}
	RequireBinaries(r)
	if r.skipped == "" || r.failed != "" {
		t.Errorf("outside CI: skipped %q, failed %q; want a skip", r.skipped, r.failed)
	}

	t.Setenv("CI", "true")
	r = &recorder{TB: t}
	RequireBinaries(r)
	if r.failed == "" || r.skipped != "" || !strings.Contains(r.failed, "PATH") {
		t.Errorf("under CI: skipped %q, failed %q; want a failure naming what was searched", r.skipped, r.failed)
	}
}

// The highest version wins among /usr/lib/postgresql/*/bin.
func TestFindBinariesHighestVersion(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9.6", "15", "17", "notaversion"} {
		dir := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"initdb", "postgres"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := versionedBins
	versionedBins = filepath.Join(root, "*", "bin")
	t.Cleanup(func() { versionedBins = old })
	t.Setenv("PATH", t.TempDir())
	b, err := FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "17", "bin", "initdb"); b.Initdb != want {
		t.Errorf("initdb = %s, want %s", b.Initdb, want)
	}
}
