package pgbin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// Reachable names the folder that stops the postgres user, and passes
// where every folder above lets it through.
func TestReachable(t *testing.T) {
	base := t.TempDir()
	// t.TempDir's own parent is 0700, like mktemp -d's folders.
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	other := &syscall.Credential{Uid: 54321, Gid: 54321} // owns nothing here
	for _, c := range []struct {
		mode os.FileMode
		want string // "" = reachable
	}{
		{0o755, ""},
		{0o711, ""},
		{0o700, "has mode 700"},
	} {
		parent := filepath.Join(base, fmt.Sprintf("p%o", c.mode))
		if err := os.Mkdir(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(parent, c.mode); err != nil {
			t.Fatal(err)
		}
		err := Reachable(filepath.Join(parent, "pg"), other)
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("mode %o: Reachable = %v, want %q", c.mode, err, c.want)
		}
	}
}
