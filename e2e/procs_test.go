package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/supervise"
)

func freePort(t *testing.T) int {
	t.Helper()
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// waitFor polls cond until it holds, the process p (when not nil) dies, or
// d passes.
func waitFor(t *testing.T, what string, d time.Duration, p *supervise.Proc, cond func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var last error
	for {
		if p != nil && p.Exited() {
			t.Fatalf("%s: %s exited (%v) while waiting:\n%s", what, p.Name(), p.Err(), p.Tail(100))
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = cond(cctx)
		ccancel()
		if last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %v: %v", what, d, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runCmd runs a command to completion and returns its standard output.
func runCmd(t *testing.T, env []string, bin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// startProc starts a process of the test's own (a Prometheus with test
// rules, say) in the stack's group: its log goes with the others', it is
// stopped with the stack, and its death fails the test.
func (s *stack) startProc(t *testing.T, name, bin string, args ...string) *supervise.Proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.st.Run(ctx, supervise.Spec{Name: name, Path: bin, Args: args}); err != nil {
		t.Fatal(err)
	}
	return s.proc(name)
}

func bin(name string) string { return filepath.Join(binDir, name) }

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
