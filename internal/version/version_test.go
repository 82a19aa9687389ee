package version

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	got := String("helix-xds")
	for _, want := range []string{"helix-xds " + Version + " (commit ", ") " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(got, want) {
			t.Errorf("String = %q, want it to contain %q", got, want)
		}
	}
	if c := Commit(); c == "" {
		t.Error("Commit is empty; want a revision or \"unknown\"")
	}
}

func TestAddFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{{nil, false}, {[]string{"--version"}, true}, {[]string{"-version"}, true}} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		requested := AddFlag(fs)
		if err := fs.Parse(tt.args); err != nil || *requested != tt.want {
			t.Errorf("args %q: requested %v, %v; want %v", tt.args, *requested, err, tt.want)
		}
	}
}

// exitCase is set in the environment of the test binary re-run by
// TestExitOnFlagError, naming the error ExitOnFlagError gets there.
const exitCase = "HELIX_VERSION_TEST_EXIT"

func TestExitOnFlagError(t *testing.T) {
	if c := os.Getenv(exitCase); c != "" {
		errs := map[string]error{"help": flag.ErrHelp, "version": ErrRequested, "bad": errors.New("flag provided but not defined: -x")}
		ExitOnFlagError("helix-test", errs[c])
		os.Exit(42) // not reached
	}
	ExitOnFlagError("helix-test", nil) // returns

	tests := []struct {
		name, stdout, stderr string
		code                 int
	}{
		{"help", "", "", 0},
		{"version", "helix-test " + Version + " (commit ", "", 0},
		{"bad", "", "helix-test: flag provided but not defined: -x\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestExitOnFlagError$")
			cmd.Env = append(os.Environ(), exitCase+"="+tt.name)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || !strings.HasPrefix(stdout.String(), tt.stdout) || (tt.stdout == "" && stdout.Len() > 0) || stderr.String() != tt.stderr {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout starting %q, stderr %q",
					code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}
