package version_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestBinaries builds every binary as make build does (Version set with
// -ldflags -X) and checks that each answers -h and --help with exit 0 and
// usage, and --version with the version, the commit and the Go version.
func TestBinaries(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	const release = "v0.0.0-versiontest"
	// The commit is stamped when git can read the tree; else the
	// binaries must say "unknown".
	buildvcs, commit := "-buildvcs=false", "unknown"
	if out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output(); err == nil {
		buildvcs, commit = "-buildvcs=auto", strings.TrimSpace(string(out))
	}
	bin := t.TempDir()
	build := func(dir, ldflag string, args ...string) {
		t.Helper()
		cmd := exec.Command("go", append([]string{"build", buildvcs, "-ldflags", "-X " + ldflag + "=" + release, "-o", bin + "/"}, args...)...)
		cmd.Dir = filepath.Join(root, dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %v in %s: %v\n%s", args, dir, err, out)
		}
	}
	build(".", "github.com/helixflow/helixflow/internal/version.Version", "-tags=vtprotobuf",
		"./cmd/helix-worker", "./cmd/helix-authz", "./cmd/helix-xds", "./cmd/helixctl", "./cmd/helix-stack")

	for _, tc := range []struct {
		binary string
		args   []string // before -h
	}{
		{"helix-worker", nil},
		{"helix-authz", nil},
		{"helix-xds", nil},
		{"helix-xds", []string{"bootstrap"}},
		{"helixctl", nil},
		{"helix-stack", nil},
	} {
		name := strings.Join(append([]string{tc.binary}, tc.args...), " ")
		for _, help := range []string{"-h", "--help"} {
			t.Run(name+" "+help, func(t *testing.T) {
				out, err := exec.Command(filepath.Join(bin, tc.binary), append(tc.args, help)...).CombinedOutput()
				if err != nil || !strings.Contains(strings.ToLower(string(out)), "usage") {
					t.Errorf("exit %v, want 0 and usage; output:\n%s", err, out)
				}
			})
		}
		if tc.args != nil {
			continue
		}
		t.Run(name+" --version", func(t *testing.T) {
			out, err := exec.Command(filepath.Join(bin, tc.binary), "--version").CombinedOutput()
			if err != nil {
				t.Fatalf("exit %v\n%s", err, out)
			}
			for _, want := range []string{tc.binary + " " + release, "commit " + commit, runtime.Version()} {
				if !strings.Contains(string(out), want) {
					t.Errorf("--version printed %q, want %q in it", out, want)
				}
			}
		})
	}
}
