// Package benchproc runs the server processes a benchmark starts: each in
// its own process group (a Ctrl-C on the terminal reaches the benchmark
// alone, which then stops every process in order), killed by the kernel
// should the benchmark die without stopping it, with its output in a log
// file whose end goes into error messages.
package benchproc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/helixflow/helixflow/bench/internal/sysinfo"
)

// Proc is a started process.
type Proc struct {
	Name    string
	LogPath string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	once    sync.Once
}

// Start starts bin with its standard error (and, unless discardStdout,
// its standard output) in logPath.
func Start(name, logPath string, discardStdout bool, env []string, bin string, args ...string) (*Proc, error) {
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
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has ended; Err then says how.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done is closed.
func (p *Proc) Err() error { return p.waitErr }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop asks the process to end (SIGTERM) and kills it after 15 s.
func (p *Proc) Stop() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		if p.Exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			fmt.Fprintf(os.Stderr, "%s did not stop within 15 s of SIGTERM; killing it\n", p.Name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// Tail is the end of the process's log, for error messages.
func (p *Proc) Tail() string {
	f, err := os.Open(p.LogPath)
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

// CPU is the process's user+system CPU time so far (all its threads).
func (p *Proc) CPU() time.Duration {
	d, _ := sysinfo.ProcCPU(p.PID())
	return d
}

// RepoRoot finds the repository root, the folder holding marker (a path
// relative to it), from the working directory up.
func RepoRoot(marker string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, marker)); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from the repository (" + marker + " not found above the working directory)")
		}
		dir = parent
	}
}
