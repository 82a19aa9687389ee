// Package supervise runs the processes of a local stack (make run, the
// end-to-end tests, the benchmarks): each in its own process group with its
// output in a log file of its own, started in order and waited for until
// ready, stopped newest first, and, in restart mode, started again with
// bounded backoff when one dies.
//
// Process groups: a Ctrl-C on the terminal reaches the supervisor alone,
// which then stops the processes in its order (workers deregister before
// helix-xds and Envoy go); stopping a process signals its whole group, so
// helpers it forked go with it. The kernel kills a process whose supervisor
// died (Pdeathsig); a PID file covers what that misses (see
// RemoveLeftovers).
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Spec describes one process.
type Spec struct {
	// Name names the process in errors and its log file (Name.log); unique
	// within a Group.
	Name string
	Path string
	Args []string
	// Env is added to the supervisor's environment.
	Env []string
	Dir string
	// Credential runs the process as another user (Postgres refuses root).
	Credential *syscall.Credential
	// DiscardStdout drops standard output (Envoy's access log in
	// benchmarks); standard error still goes to the log.
	DiscardStdout bool
	// Ready reports whether the process serves; Start polls it (every
	// 100 ms, each call bounded by 5 s) until it returns nil. Nil: started
	// is ready.
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds the wait for Ready (default 60 s).
	ReadyTimeout time.Duration
	// StopSignal asks the process to end (default SIGTERM; Postgres wants
	// SIGINT, its fast shutdown); it is killed StopTimeout later (default
	// 15 s).
	StopSignal  syscall.Signal
	StopTimeout time.Duration
}

func (s Spec) readyTimeout() time.Duration {
	if s.ReadyTimeout > 0 {
		return s.ReadyTimeout
	}
	return 60 * time.Second
}

func (s Spec) stopSignal() syscall.Signal {
	if s.StopSignal != 0 {
		return s.StopSignal
	}
	return syscall.SIGTERM
}

func (s Spec) stopTimeout() time.Duration {
	if s.StopTimeout > 0 {
		return s.StopTimeout
	}
	return 15 * time.Second
}

// Proc is one run of a process.
type Proc struct {
	spec    Spec
	logPath string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	err     error
}

// launch starts the process with its output in logPath, truncated unless
// appendLog (a restart keeps the earlier runs' lines).
func launch(spec Spec, logPath string, appendLog bool) (*Proc, error) {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if appendLog {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	log, err := os.OpenFile(logPath, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", spec.Name, err)
	}
	if appendLog {
		fmt.Fprintf(log, "--- supervise: %s started again at %s\n", spec.Name, time.Now().Format(time.RFC3339))
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stderr = log
	if !spec.DiscardStdout {
		cmd.Stdout = log
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: spec.Credential}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	p := &Proc{spec: spec, logPath: logPath, cmd: cmd, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// Name is the process's name in its Spec.
func (p *Proc) Name() string { return p.spec.Name }

// PID is the process id (and its process group's id).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// LogPath is the file holding its output.
func (p *Proc) LogPath() string { return p.logPath }

// Done is closed when the process has ended; Err then says how.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit status once Done is closed (nil: exit 0).
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process's group.
func (p *Proc) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(-p.PID(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: %w", p.Name(), err)
	}
	return nil
}

// stop asks the process group to end and kills it after the Spec's stop
// timeout; it reports whether it had to kill.
func (p *Proc) stop() (killed bool) {
	if p.Exited() {
		return false
	}
	_ = p.Signal(p.spec.stopSignal())
	select {
	case <-p.done:
		return false
	case <-time.After(p.spec.stopTimeout()):
		_ = p.Signal(syscall.SIGKILL)
		<-p.done
		return true
	}
}

// Tail is the end of the log, at most n lines of its last 64 KiB.
func (p *Proc) Tail(n int) string { return Tail(p.logPath, n) }

// Tail is the end of the file at path, at most n lines of its last 64 KiB.
func Tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitReady polls the Spec's Ready until it holds, the process exits, or
// the ready timeout or ctx ends.
func (p *Proc) waitReady(ctx context.Context) error {
	if p.spec.Ready == nil {
		return nil
	}
	timeout := p.spec.readyTimeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = p.spec.Ready(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited (%v) before it was ready", exitStatus(p.err))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not ready after %v: %w", timeout, last)
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// tailLines is how much of a log an error shows.
const tailLines = 20

// StartError: a process did not start or did not become ready.
type StartError struct {
	Name    string
	LogPath string
	Tail    string // the end of its log
	Err     error
}

func (e *StartError) Error() string {
	return fmt.Sprintf("%s did not start: %v; the end of its log (%s):\n%s", e.Name, e.Err, e.LogPath, e.Tail)
}

func (e *StartError) Unwrap() error { return e.Err }

// ExitError: a process ended while the stack needed it.
type ExitError struct {
	Name    string
	LogPath string
	Tail    string
	Err     error // its exit status; nil for exit 0
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s exited (%s); the end of its log (%s):\n%s", e.Name, exitStatus(e.Err), e.LogPath, e.Tail)
}

func (e *ExitError) Unwrap() error { return e.Err }
