// Package mailpitbin finds the mailpit binary (the SMTP server that keeps
// mails readable through an HTTP API) that `make run` and the tests start,
// and holds the arguments both give it: one rule for the local stack
// (internal/stack) and the tests (internal/mailtest).
package mailpitbin

import (
	"fmt"
	"os"
	"path/filepath"
)

// Env names a variable that overrides where mailpit is found.
const Env = "HELIX_MAILPIT_BIN"

// Path is where scripts/deps.sh builds mailpit, relative to the
// repository root.
const Path = ".tools/mailpit/mailpit"

// Find returns the mailpit binary: $HELIX_MAILPIT_BIN, else root/Path
// (make deps builds it).
func Find(root string) (string, error) {
	if p := os.Getenv(Env); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%s=%s is not an executable file", Env, p)
	}
	p := filepath.Join(root, Path)
	if isExecutable(p) {
		return p, nil
	}
	return "", fmt.Errorf("no mailpit at %s (run `make deps`, which builds it) and %s is not set", p, Env)
}

// Args are the arguments of a private mailpit: SMTP and the web UI and
// API on the given loopback addresses, messages in database (a file the
// caller owns), nothing asked of the internet (no version check, no
// reverse DNS), errors-only logging.
func Args(smtpAddr, httpAddr, database string) []string {
	return []string{
		"--smtp", smtpAddr, "--listen", httpAddr, "--database", database,
		"--disable-version-check", "--smtp-disable-rdns", "--quiet",
	}
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
