// Package redistest starts private Redis servers (Debian's redis-server)
// for tests: loopback only, on a free port, nothing saved to disk. Without
// redis-server a test is skipped, or fails when CI=true.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/testdeps"
)

var (
	// ErrNoRedis: redis-server is not on PATH.
	ErrNoRedis = errors.New("redistest: redis-server not found on PATH")
	// ErrRunning: Start on a server that runs.
	ErrRunning = errors.New("redistest: already running")
)

// Server is one private redis-server. Stop and Start it again to test a
// Redis outage; it keeps its address.
type Server struct {
	Addr string // 127.0.0.1:port
	dir  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// RequireBinary skips the test without redis-server, or fails it when
// CI=true.
func RequireBinary(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		testdeps.Missing(t, "%v: make deps installs Debian's redis-server", ErrNoRedis)
	}
}

// Start starts a Redis for one test; it is killed when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	RequireBinary(t)
	port, err := freeport.Pick()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: t.TempDir()}
	t.Cleanup(s.Stop)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// Start (re)starts the server on its address and waits until it answers
// PING.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return ErrRunning
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port,
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--protected-mode", "yes")
	log, err := os.Create(s.dir + "/redis.log")
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	s.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if ping(ctx, s.Addr) == nil {
			return nil
		}
		select {
		case err := <-exited:
			s.cmd = nil
			out, _ := os.ReadFile(s.dir + "/redis.log")
			return fmt.Errorf("redistest: redis-server exited (%v): %s", err, out)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			s.cmd = nil
			return fmt.Errorf("redistest: redis-server on %s did not answer PING", s.Addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop kills the server (SIGKILL: an outage, not a shutdown).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	s.cmd = nil
	// The port is free once the kernel closed the listener.
	for i := 0; i < 100; i++ {
		c, err := net.DialTimeout("tcp", s.Addr, 50*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends an inline PING and expects +PONG.
func ping(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redistest: PING answered %q", line)
	}
	return nil
}
