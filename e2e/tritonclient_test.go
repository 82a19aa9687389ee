package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// venvPython is the project's Python (make deps), which has tritonclient.
func venvPython(t *testing.T) string {
	t.Helper()
	p := filepath.Join(repoRoot, ".venv", "bin", "python")
	if _, err := os.Stat(p); err != nil {
		// Envoy came from this .venv, so a missing Python is a broken
		// install, not a reason to skip.
		t.Fatalf("%s is missing (%v): run `make deps`", p, err)
	}
	return p
}

// runTritonClientCheck runs e2e/tritonclient_check.py against the gateway:
// tritonclient gRPC and HTTP, tokens passed in the environment.
func (s *stack) runTritonClientCheck(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, venvPython(t), filepath.Join(repoRoot, "e2e", "tritonclient_check.py"),
		"--url", s.gateway, "--ca-file", s.caFile)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(),
		"HELIX_TOKEN_ALL="+s.clients["all"].token,
		"HELIX_TOKEN_INFER="+s.clients["infer-only"].token,
		"HELIX_TOKEN_MLP="+s.clients["mlp-only"].token,
		"HELIX_TOKEN_FREE="+s.clients["free"].token,
		"HELIX_CLIENT_ALL="+s.clients["all"].id,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("tritonclient_check.py (%v):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("tritonclient_check.py: %v", err)
	}
	// Guard against a script that silently skipped its checks.
	if n := strings.Count(out.String(), "ok: "); n < 23 {
		t.Fatalf("tritonclient_check.py passed only %d checks, want 23", n)
	}
}
