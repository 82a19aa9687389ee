// Package pgbin is the machine's PostgreSQL server programs (Debian's
// postgresql package): where they are (Find) and as whom they run (User,
// since Postgres refuses root). The local stack (internal/stack) and the
// tests' private servers (internal/pgtest) both start Postgres with them,
// so that the two agree; it lives apart from pgtest so that the stack
// does not link test support.
package pgbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
)

// ErrNotFound: the PostgreSQL server binaries were not found.
var ErrNotFound = errors.New("PostgreSQL binaries (initdb, postgres) not found")

// versionedBins is where Debian installs each PostgreSQL major version.
var versionedBins = "/usr/lib/postgresql/*/bin"

// Binaries are the PostgreSQL programs that make and run a server.
type Binaries struct {
	Initdb   string
	Postgres string
}

// Find looks for initdb and postgres side by side: first initdb on PATH
// (symlinks followed), then /usr/lib/postgresql/*/bin, highest version
// first. It returns an error wrapping ErrNotFound if neither has them.
func Find() (Binaries, error) {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	versions, _ := filepath.Glob(versionedBins)
	sort.Slice(versions, func(i, j int) bool {
		return pgVersion(versions[i]) > pgVersion(versions[j])
	})
	dirs = append(dirs, versions...)
	for _, d := range dirs {
		b := Binaries{Initdb: filepath.Join(d, "initdb"), Postgres: filepath.Join(d, "postgres")}
		if isExecutable(b.Initdb) && isExecutable(b.Postgres) {
			return b, nil
		}
	}
	return Binaries{}, fmt.Errorf("%w (searched PATH and %s)", ErrNotFound, versionedBins)
}

// pgVersion reads the major version from /usr/lib/postgresql/<v>/bin.
func pgVersion(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// User returns the credentials to run initdb and postgres with: nil
// (ourselves) unless we are root, which Postgres refuses; then the
// "postgres" system user's.
func User() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, Postgres must run as another user, and there is no 'postgres' user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("the postgres user has ids %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// Reachable checks that owner (User's answer) may pass through every
// folder above dir, which Postgres needs for its data folder and a
// root-made temporary folder (mktemp -d: 0700) denies; the error names the
// folder, where initdb would only say "Permission denied".
func Reachable(dir string, owner *syscall.Credential) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgbin: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		m := fi.Mode().Perm()
		ok = ok && (m&0o001 != 0 ||
			(st.Gid == owner.Gid && m&0o010 != 0) ||
			(st.Uid == owner.Uid && m&0o100 != 0))
		if !ok {
			return fmt.Errorf("pgbin: the postgres user cannot reach %s: %s has mode %o", dir, p, m)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
