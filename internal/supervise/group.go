package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Options configure a Group.
type Options struct {
	// LogDir holds each process's log, Name.log.
	LogDir string
	// Restart: a process that dies is started again after a backoff delay
	// (Backoff) instead of being reported on Failed; after MaxRestarts
	// restarts in a row that did not stay up for StableAfter, it is given
	// up and reported on Failed.
	Restart     bool
	Backoff     func() backoff.BackOff // default: 500 ms doubling to 30 s
	MaxRestarts int                    // default 10
	StableAfter time.Duration          // default 1 minute
	// PIDFile, when set, lists "pid name" of every running process, for
	// RemoveLeftovers after a supervisor killed with SIGKILL.
	PIDFile string
	Logger  *slog.Logger // default slog.Default()
}

// Group runs processes: started in order, each waited for until ready,
// stopped newest first.
type Group struct {
	opts   Options
	ctx    context.Context // ends with Close: restarts stop
	cancel context.CancelFunc
	failed chan error

	mu     sync.Mutex
	slots  []*slot // start order
	closed bool
}

// slot is one named process across its restarts.
type slot struct {
	spec     Spec
	proc     *Proc
	stopping bool
	ctx      context.Context // ends when the slot is stopped: no restart then
	cancel   context.CancelFunc
	watched  chan struct{} // closed when its watcher has returned
}

// New makes a Group; it starts nothing.
func New(opts Options) (*Group, error) {
	if opts.LogDir == "" {
		return nil, errors.New("supervise: LogDir is empty")
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("supervise: %w", err)
	}
	if opts.Backoff == nil {
		opts.Backoff = func() backoff.BackOff {
			b := backoff.NewExponentialBackOff()
			b.InitialInterval, b.MaxInterval = 500*time.Millisecond, 30*time.Second
			return b
		}
	}
	if opts.MaxRestarts <= 0 {
		opts.MaxRestarts = 10
	}
	if opts.StableAfter <= 0 {
		opts.StableAfter = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Group{opts: opts, ctx: ctx, cancel: cancel, failed: make(chan error, 1)}, nil
}

// Failed delivers the first process that died and was not restarted
// (every death without Restart; one given up on with it).
func (g *Group) Failed() <-chan error { return g.failed }

// Start starts spec's process and waits until it is ready. On failure the
// process is stopped and the error is a *StartError naming it, with the
// end of its log. A name stopped earlier (Stop) may be started again: it
// keeps its place in the stop order.
func (g *Group) Start(ctx context.Context, spec Spec) (*Proc, error) {
	return g.start(ctx, spec, false)
}

// start is Start; again keeps the log of an earlier run.
func (g *Group) start(ctx context.Context, spec Spec, again bool) (*Proc, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, errors.New("supervise: group closed")
	}
	i := slices.IndexFunc(g.slots, func(s *slot) bool { return s.spec.Name == spec.Name })
	if i >= 0 && !g.slots[i].stopping {
		g.mu.Unlock()
		return nil, fmt.Errorf("supervise: %s is running already", spec.Name)
	}
	g.mu.Unlock()

	p, err := g.run(ctx, spec, again)
	if err != nil {
		return nil, err
	}
	s := &slot{spec: spec, proc: p, watched: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(g.ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		p.stop()
		return nil, errors.New("supervise: group closed")
	}
	if i >= 0 && i < len(g.slots) && g.slots[i].spec.Name == spec.Name {
		g.slots[i] = s
	} else {
		g.slots = append(g.slots, s)
	}
	g.writePIDs()
	go g.watch(s)
	return p, nil
}

// run starts one run of spec and waits until it is ready.
func (g *Group) run(ctx context.Context, spec Spec, again bool) (*Proc, error) {
	logPath := filepath.Join(g.opts.LogDir, spec.Name+".log")
	p, err := launch(spec, logPath, again)
	if err != nil {
		return nil, &StartError{Name: spec.Name, LogPath: logPath, Tail: Tail(logPath, tailLines), Err: err}
	}
	if err := p.waitReady(ctx); err != nil {
		p.stop()
		return nil, &StartError{Name: spec.Name, LogPath: logPath, Tail: p.Tail(tailLines), Err: err}
	}
	return p, nil
}

// watch waits for the slot's process to end: unless it was stopped, that
// is reported on Failed, or, with Restart, it is started again.
func (g *Group) watch(s *slot) {
	defer close(s.watched)
	b := g.opts.Backoff()
	restarts := 0
	for {
		g.mu.Lock()
		p := s.proc
		g.mu.Unlock()
		select {
		case <-p.Done():
		case <-s.ctx.Done():
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		exit := &ExitError{Name: s.spec.Name, LogPath: p.LogPath(), Tail: p.Tail(tailLines), Err: p.Err()}
		g.mu.Lock()
		g.writePIDs()
		g.mu.Unlock()
		if !g.opts.Restart {
			g.fail(exit)
			return
		}
		if time.Since(p.started) >= g.opts.StableAfter {
			b.Reset()
			restarts = 0
		}
		for {
			restarts++
			d := b.NextBackOff()
			if restarts > g.opts.MaxRestarts || d == backoff.Stop {
				g.fail(fmt.Errorf("gave up after %d restarts: %w", restarts-1, exit))
				return
			}
			g.opts.Logger.Warn("process exited; restarting", "process", s.spec.Name, "status", exitStatus(exit.Err),
				"in", d, "log", exit.LogPath)
			select {
			case <-time.After(d):
			case <-s.ctx.Done():
				return
			}
			np, err := g.run(s.ctx, s.spec, true)
			if err == nil {
				g.mu.Lock()
				if s.stopping { // stopped while it was starting
					g.mu.Unlock()
					np.stop()
					return
				}
				s.proc = np
				g.writePIDs()
				g.mu.Unlock()
				g.opts.Logger.Info("process restarted", "process", s.spec.Name, "pid", np.PID())
				break
			}
			if s.ctx.Err() != nil {
				return
			}
			var se *StartError
			if errors.As(err, &se) {
				exit = &ExitError{Name: se.Name, LogPath: se.LogPath, Tail: se.Tail, Err: se.Err}
			}
		}
	}
}

func (g *Group) fail(err error) {
	select {
	case g.failed <- err:
	default: // the first is reported; the stack is going down
	}
}

// Proc returns the current run of the named process, or nil.
func (g *Group) Proc(name string) *Proc {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.slots {
		if s.spec.Name == name && !s.stopping {
			return s.proc
		}
	}
	return nil
}

// Procs returns the current runs, in start order (stopped ones left out).
func (g *Group) Procs() []*Proc {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*Proc
	for _, s := range g.slots {
		if !s.stopping {
			out = append(out, s.proc)
		}
	}
	return out
}

// Stop stops the named process (its stop signal, then SIGKILL after its
// stop timeout) without reporting or restarting it. It may be started
// again with Start.
func (g *Group) Stop(name string) error { return g.stopNamed(name, false) }

// Kill ends the named process's group with SIGKILL at once (a test's
// crash: no shutdown, no deregistration), without reporting or restarting
// it.
func (g *Group) Kill(name string) error { return g.stopNamed(name, true) }

func (g *Group) stopNamed(name string, kill bool) error {
	g.mu.Lock()
	i := slices.IndexFunc(g.slots, func(s *slot) bool { return s.spec.Name == name && !s.stopping })
	if i < 0 {
		g.mu.Unlock()
		return fmt.Errorf("supervise: no running process %s", name)
	}
	s := g.slots[i]
	s.stopping = true
	s.cancel()
	g.mu.Unlock()
	if kill {
		<-s.watched
		_ = s.proc.Signal(syscall.SIGKILL)
	}
	g.stopSlot(s)
	return nil
}

func (g *Group) stopSlot(s *slot) {
	<-s.watched // no restart races the stop
	g.mu.Lock()
	p := s.proc
	g.mu.Unlock()
	if p.stop() {
		g.opts.Logger.Warn("process did not stop in time; killed", "process", s.spec.Name, "after", s.spec.stopTimeout())
	}
	g.mu.Lock()
	g.writePIDs()
	g.mu.Unlock()
}

// Close stops every process, newest first, each waited for before the
// next, and removes the PID file.
func (g *Group) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.cancel()
	var live []*slot
	for _, s := range slices.Backward(g.slots) {
		if !s.stopping {
			s.stopping = true
			s.cancel()
			live = append(live, s)
		}
	}
	g.mu.Unlock()
	for _, s := range live {
		g.stopSlot(s)
	}
	if g.opts.PIDFile != "" {
		_ = os.Remove(g.opts.PIDFile)
	}
}

// writePIDs records the live processes; g.mu is held.
func (g *Group) writePIDs() {
	if g.opts.PIDFile == "" {
		return
	}
	var b strings.Builder
	for _, s := range g.slots {
		if !s.stopping && !s.proc.Exited() {
			fmt.Fprintf(&b, "%d %s\n", s.proc.PID(), s.spec.Name)
		}
	}
	if err := os.WriteFile(g.opts.PIDFile, []byte(b.String()), 0o644); err != nil {
		g.opts.Logger.Warn("cannot write the PID file", "path", g.opts.PIDFile, "err", err)
	}
}

// Crash ends the named process's group with SIGKILL at once, as Kill
// does (no shutdown, no deregistration), then starts it again as it was,
// its log kept, and waits until it is ready: a crash and the restart that
// follows, timed by the caller (the chaos suite, tests/resilience)
// rather than by restart mode's backoff. It keeps its place in the stop
// order.
func (g *Group) Crash(ctx context.Context, name string) (*Proc, error) {
	g.mu.Lock()
	i := slices.IndexFunc(g.slots, func(s *slot) bool { return s.spec.Name == name && !s.stopping })
	var spec Spec
	if i >= 0 {
		spec = g.slots[i].spec
	}
	g.mu.Unlock()
	if i < 0 {
		return nil, fmt.Errorf("supervise: no running process %s", name)
	}
	// The process's children die with it: those in its group by the
	// group's SIGKILL, those that left it (Postgres's backends each call
	// setsid) by their own. One still holding the old run's resources
	// (Postgres's shared memory) would stop the new run from starting.
	var tree []int
	if p := g.Proc(name); p != nil {
		tree = append(Descendants(p.PID()), p.PID())
	}
	if err := g.Kill(name); err != nil {
		return nil, err
	}
	for _, pid := range tree {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && slices.ContainsFunc(tree, alive); {
		time.Sleep(10 * time.Millisecond)
	}
	return g.start(ctx, spec, true)
}

// Descendants are the processes below pid, nearest first, from the parent
// ids in /proc/PID/stat (they may have left its process group, as
// Postgres's backends do).
func Descendants(pid int) []int {
	parent := map[int][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if f := statFields(d); len(f) > 1 {
			child, _ := strconv.Atoi(filepath.Base(d))
			ppid, _ := strconv.Atoi(f[1])
			parent[ppid] = append(parent[ppid], child)
		}
	}
	var out []int
	for queue := parent[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, parent[queue[0]]...)
	}
	return out
}

// alive: pid exists and is not a zombie (dead, holding nothing, waiting
// for its new parent to reap it).
func alive(pid int) bool {
	f := statFields("/proc/" + strconv.Itoa(pid))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// statFields are /proc/PID/stat's fields after the command (which may
// hold spaces): state, ppid, pgrp, ...
func statFields(dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// Replace starts spec as the next run of the named running process while
// the current run still serves, waits until the new run is ready, and then
// gives the old run grace to end by itself before stopping it: Envoy's hot
// restart, where the new epoch takes the listening sockets from the old,
// which drains its connections and exits. The new run keeps the old one's
// place in the stop order, and later restarts (Crash, restart mode) start
// spec. If the new run does not become ready, the old one keeps running
// under supervision and the error is returned.
func (g *Group) Replace(ctx context.Context, spec Spec, grace time.Duration) (*Proc, error) {
	g.mu.Lock()
	i := slices.IndexFunc(g.slots, func(s *slot) bool { return s.spec.Name == spec.Name && !s.stopping })
	if i < 0 {
		g.mu.Unlock()
		return nil, fmt.Errorf("supervise: no running process %s", spec.Name)
	}
	old := g.slots[i]
	// The old run's end is expected from now on: not a failure, no restart.
	old.stopping = true
	old.cancel()
	g.mu.Unlock()
	<-old.watched

	p, err := g.run(ctx, spec, true)
	keep := p
	if err != nil {
		keep = old.proc // watched again, as before
		spec = old.spec
	}
	s := &slot{spec: spec, proc: keep, watched: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(g.ctx)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		keep.stop()
		return nil, errors.New("supervise: group closed")
	}
	g.slots[i] = s
	g.writePIDs()
	g.mu.Unlock()
	go g.watch(s)
	if err != nil {
		return nil, err
	}
	select {
	case <-old.proc.Done():
	case <-time.After(grace):
		if old.proc.stop() {
			g.opts.Logger.Warn("replaced process did not stop in time; killed", "process", spec.Name)
		}
	}
	return p, nil
}
