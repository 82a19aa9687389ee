package pgbin

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/testdeps"
)

func TestFindMissing(t *testing.T) {
	old := versionedBins
	versionedBins = filepath.Join(t.TempDir(), "*", "bin")
	t.Cleanup(func() { versionedBins = old })
	t.Setenv("PATH", t.TempDir())

	_, err := Find()
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), versionedBins) {
		t.Fatalf("Find: %v, want ErrNotFound naming where it looked", err)
	}
}

// The highest version wins among /usr/lib/postgresql/*/bin.
func TestFindHighestVersion(t *testing.T) {
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
	b, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "17", "bin", "initdb"); b.Initdb != want {
		t.Errorf("initdb = %s, want %s", b.Initdb, want)
	}
}

// Debian's folders are searched without PATH.
func TestFindWithoutPath(t *testing.T) {
	b, err := Find()
	if err != nil {
		testdeps.Missing(t, "%v: make deps installs Debian's postgresql", err)
	}
	t.Setenv("PATH", t.TempDir())
	b2, err := Find()
	if err != nil {
		t.Fatalf("not found under /usr/lib/postgresql without PATH: %v", err)
	}
	if filepath.Base(b2.Initdb) != "initdb" || filepath.Base(b.Postgres) != "postgres" {
		t.Errorf("odd binaries %+v %+v", b, b2)
	}
}

// Root runs Postgres as the postgres user; anyone else as themselves.
func TestUser(t *testing.T) {
	cred, err := User()
	if os.Geteuid() != 0 {
		if cred != nil || err != nil {
			t.Fatalf("User() = %+v, %v as a non-root user, want nil, nil", cred, err)
		}
		return
	}
	if err != nil {
		testdeps.Missing(t, "root without a postgres user (the postgresql package makes it): %v", err)
	}
	if cred.Uid == 0 {
		t.Errorf("User() = %+v as root, want the postgres user's ids", cred)
	}
}
