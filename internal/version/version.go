// Package version is what every HelixFlow binary answers to --version:
// the release (Version, set at build time), the commit it was built from
// and the Go version, read from the build information Go stamps in.
//
//	go build -ldflags "-X github.com/helixflow/helixflow/internal/version.Version=v1.2.0" ./cmd/...
//
// (make build does this with $(VERSION).)
package version

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
)

// Version is the release, set with -ldflags -X; "dev" when not.
var Version = "dev"

// ErrRequested is returned by a command's flag parsing when --version was
// given: print String and exit 0, as for flag.ErrHelp.
var ErrRequested = errors.New("version requested")

// AddFlag adds --version to fs; after fs.Parse, *requested says whether it
// was given.
func AddFlag(fs *flag.FlagSet) (requested *bool) {
	return fs.Bool("version", false, "print the version, commit and Go version, and exit")
}

// ExitOnFlagError ends program the way every HelixFlow daemon does when
// its flag parsing returned err: -h/--help has printed the usage (exit 0),
// --version prints String (exit 0), any other error is printed after the
// program's name (exit 2). It returns only when err is nil.
func ExitOnFlagError(program string, err error) {
	switch {
	case err == nil:
		return
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, ErrRequested):
		fmt.Println(String(program))
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", program, err)
		os.Exit(2)
	}
}

// String is the line --version prints for program, e.g.
// "helix-xds v1.2.0 (commit 8fdfb5b0c1d2, modified) go1.26.8 linux/amd64".
func String(program string) string {
	return fmt.Sprintf("%s %s (commit %s) %s %s/%s", program, Version, Commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Commit is the VCS revision the binary was built from, with ", modified"
// when the tree had uncommitted changes; "unknown" when the build did not
// stamp it (go build -buildvcs=false, or no git).
func Commit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, modified := "unknown", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified {
		rev += ", modified"
	}
	return rev
}
