package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/helixflow/helixflow/bench/internal/sysinfo"
	"github.com/helixflow/helixflow/internal/freeport"
)

// errExited: a process of the stack ended while the benchmark needed it.
var errExited = errors.New("process exited")

// proc is a server process started by the benchmark. It runs in its own
// process group, so a Ctrl-C on the terminal reaches the benchmark alone,
// which then stops every process in order; Pdeathsig kills it should the
// benchmark die without doing so.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	once    sync.Once
}

// startProc starts bin with its standard error (and, unless discardStdout,
// its standard output) in logPath.
func startProc(name, logPath string, discardStdout bool, env []string, bin string, args ...string) (*proc, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = log
	if !discardStdout {
		cmd.Stdout = log
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end (SIGTERM) and kills it after 15 s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			logf("%s did not stop within 15 s of SIGTERM; killing it", p.name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail() string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	const n = 4000
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// cpu is the process's user+system CPU time so far (all its threads).
func (p *proc) cpu() time.Duration {
	d, _ := sysinfo.ProcCPU(p.pid())
	return d
}

// waitFor polls cond every 100 ms until it holds, p exits, ctx ends or d
// passes; the error says what was last seen.
func waitFor(ctx context.Context, what string, d time.Duration, p *proc, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		last = cond(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		var done <-chan struct{}
		if p != nil {
			done = p.done
		}
		select {
		case <-done:
			return fmt.Errorf("%s: %s %w (%v):\n%s", what, p.name, errExited, p.waitErr, p.tail())
		case <-ctx.Done():
			if p != nil {
				return fmt.Errorf("%s: not within %v (%w); last: %v\n%s log:\n%s", what, d, ctx.Err(), last, p.name, p.tail())
			}
			return fmt.Errorf("%s: not within %v (%w); last: %v", what, d, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// httpGet GETs url and wants a 200; it returns the body.
func httpGet(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}

// ports hands out distinct free loopback ports (internal/freeport: below
// the ephemeral range, so no outgoing connection takes one before its
// server binds it).
type ports struct{ used map[int]bool }

func (p *ports) pick() (int, error) {
	if p.used == nil {
		p.used = map[int]bool{}
	}
	for range 100 {
		n, err := freeport.Pick()
		if err != nil {
			return 0, err
		}
		if !p.used[n] {
			p.used[n] = true
			return n, nil
		}
	}
	return 0, errors.New("no distinct free port after 100 picks")
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// repoRoot finds the repository root (the folder with go.mod and
// bench/gateway) from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "bench", "gateway", "main.go")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from the repository (bench/gateway/main.go not found above the working directory)")
		}
		dir = parent
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
