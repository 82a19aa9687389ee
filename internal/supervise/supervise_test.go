package supervise

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
)

func newGroup(t *testing.T, opts Options) *Group {
	t.Helper()
	opts.LogDir = t.TempDir()
	opts.Logger = nilLogger()
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func sh(name, script string) Spec {
	return Spec{Name: name, Path: "sh", Args: []string{"-c", script}, StopTimeout: 5 * time.Second}
}

// trapper logs "ready" once its TERM trap is set; on TERM it appends its
// name to out.
func trapper(g *Group, name, out string) Spec {
	s := sh(name, `trap 'echo `+name+` >> `+out+`; exit 0' TERM; echo ready; while :; do sleep 0.05; done`)
	s.Ready = logged(g, name, "ready", 1)
	return s
}

// logged is a Ready that waits until name's log holds text n times.
func logged(g *Group, name, text string, n int) func(context.Context) error {
	return func(context.Context) error {
		if got := strings.Count(Tail(filepath.Join(g.opts.LogDir, name+".log"), 10), text); got < n {
			return errors.New("not logged yet")
		}
		return nil
	}
}

func TestStartFailureNamesTheProcessAndItsLog(t *testing.T) {
	notReady := func(context.Context) error { return errors.New("no answer") }
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"exits", Spec{Name: "crasher", Path: "sh", Args: []string{"-c", "echo listening failed: port taken >&2; exit 3"}, Ready: notReady},
			"exited (exit status 3) before it was ready"},
		{"never ready", Spec{Name: "sleeper", Path: "sh", Args: []string{"-c", "echo listening failed: port taken; exec sleep 60"},
			Ready: notReady, ReadyTimeout: 300 * time.Millisecond}, "not ready after 300ms: no answer"},
		{"no binary", Spec{Name: "ghost", Path: "/nonexistent/helix-ghost"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGroup(t, Options{})
			_, err := g.Start(context.Background(), tc.spec)
			var se *StartError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want a *StartError", err)
			}
			if se.Name != tc.spec.Name || !strings.Contains(err.Error(), tc.spec.Name+" did not start") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s and %q", err, tc.spec.Name, tc.want)
			}
			if tc.spec.Path == "sh" && !strings.Contains(se.Tail, "listening failed: port taken") {
				t.Fatalf("tail %q lacks the log line", se.Tail)
			}
			if g.Proc(tc.spec.Name) != nil {
				t.Fatal("a process that failed to start is still listed")
			}
		})
	}
}

func TestReady(t *testing.T) {
	g := newGroup(t, Options{})
	flag := filepath.Join(t.TempDir(), "up")
	spec := sh("writer", "sleep 0.3; touch "+flag+"; exec sleep 60")
	spec.Ready = func(context.Context) error { _, err := os.Stat(flag); return err }
	if _, err := g.Start(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(flag); err != nil {
		t.Fatal("Start returned before the process was ready")
	}
}

func fastBackoff() backoff.BackOff { return backoff.NewConstantBackOff(50 * time.Millisecond) }

func TestKilledProcessRestarts(t *testing.T) {
	g := newGroup(t, Options{Restart: true, Backoff: fastBackoff})
	spec := sh("victim", "echo run; exec sleep 60")
	spec.Ready = logged(g, "victim", "run", 1)
	p, err := g.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if q := g.Proc("victim"); q != nil && q != p && !q.Exited() && logged(g, "victim", "run", 2)(context.Background()) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not restarted within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-g.Failed():
		t.Fatalf("reported as failed: %v", err)
	default:
	}
	// Killed on purpose: neither restarted nor reported.
	q := g.Proc("victim")
	if err := g.Kill("victim"); err != nil {
		t.Fatal(err)
	}
	if !q.Exited() || g.Proc("victim") != nil {
		t.Fatal("Kill left it running")
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-g.Failed():
		t.Fatalf("a kill was reported: %v", err)
	default:
	}
}

func TestRestartGivesUp(t *testing.T) {
	g := newGroup(t, Options{Restart: true, Backoff: fastBackoff, MaxRestarts: 2})
	marker := filepath.Join(t.TempDir(), "first")
	// Up on the first run; every later run dies at once.
	if _, err := g.Start(context.Background(), sh("flaky", "[ -e "+marker+" ] && exit 4; touch "+marker+"; sleep 0.2; exit 4")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-g.Failed():
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Name != "flaky" || !strings.Contains(err.Error(), "gave up after 2 restarts") {
			t.Fatalf("got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not given up within 10s")
	}
}

func TestDeathWithoutRestartIsReported(t *testing.T) {
	g := newGroup(t, Options{})
	spec := sh("victim", "echo last words; exec sleep 60")
	spec.Ready = logged(g, "victim", "last words", 1)
	p, err := g.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Signal(syscall.SIGKILL)
	select {
	case err := <-g.Failed():
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Name != "victim" || !strings.Contains(ee.Tail, "last words") {
			t.Fatalf("got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the death was not reported")
	}
}

func TestStopOrderIsReverseStartOrder(t *testing.T) {
	g := newGroup(t, Options{})
	out := filepath.Join(t.TempDir(), "stopped")
	for _, name := range []string{"postgres", "helix-xds", "helix-worker"} {
		if _, err := g.Start(context.Background(), trapper(g, name, out)); err != nil {
			t.Fatal(err)
		}
	}
	// One stopped and started again keeps its place.
	if err := g.Stop("helix-xds"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Start(context.Background(), trapper(g, "helix-xds", out)); err != nil {
		t.Fatal(err)
	}
	g.Close()
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(string(b)), []string{"helix-worker", "helix-xds", "postgres"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("stopped %v, want %v", got, want)
	}
}

func TestCloseKillsWhatIgnoresTheSignal(t *testing.T) {
	g := newGroup(t, Options{})
	spec := sh("stubborn", `trap '' TERM; echo ready; while :; do sleep 0.05; done`)
	spec.Ready = logged(g, "stubborn", "ready", 1)
	spec.StopTimeout = 200 * time.Millisecond
	p, err := g.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if !p.Exited() {
		t.Fatal("still running after Close")
	}
}

func TestRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	g := newGroup(t, Options{PIDFile: pidFile})
	// The marker is in the command line, as a checkout's path is (a
	// no-op's argument: `sleep 60 <dir>` would exit at once, refusing its
	// second interval).
	p, err := g.Start(context.Background(), sh("orphan", "sleep 60; : "+dir))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil || !strings.Contains(string(b), " orphan") {
		t.Fatalf("PID file: %q, %v", b, err)
	}
	if err := RemoveLeftovers(pidFile, dir, nilLogger()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover process is still running")
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Fatalf("PID file left: %v", err)
	}
}

func nilLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Crash: SIGKILL at once (a TERM trap never runs), then the same process
// again, ready, in the same place in the stop order, its log kept.
func TestCrash(t *testing.T) {
	g := newGroup(t, Options{})
	out := filepath.Join(t.TempDir(), "out")
	first := trapper(g, "first", out)
	victim := sh("victim", `trap 'echo TERM >> `+out+`; exit 0' TERM; echo run; while :; do sleep 0.05; done`)
	runs := 1 // ready: this run's line is in the log
	victim.Ready = func(ctx context.Context) error { return logged(g, "victim", "run", runs)(ctx) }
	for _, s := range []Spec{first, victim} {
		if _, err := g.Start(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	old := g.Proc("victim")
	runs = 2
	p, err := g.Crash(context.Background(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	if !old.Exited() || p == old || p.Exited() || g.Proc("victim") != p {
		t.Fatalf("old exited %v, new %v running %v", old.Exited(), p != old, !p.Exited())
	}
	if b, _ := os.ReadFile(out); strings.Contains(string(b), "TERM") {
		t.Fatal("the crash ran the TERM trap: not a SIGKILL")
	}
	if log := p.Tail(10); !strings.Contains(log, "started again") {
		t.Fatalf("log not kept across the crash:\n%s", log)
	}
	if err := g.Kill("nonexistent"); err == nil {
		t.Fatal("no error for an unknown name")
	}
	if _, err := g.Crash(context.Background(), "nonexistent"); err == nil {
		t.Fatal("Crash of an unknown name: no error")
	}
	g.Close() // newest first: victim's TERM before first's
	if b, _ := os.ReadFile(out); string(b) != "TERM\nfirst\n" {
		t.Fatalf("stop order after the crash: %q, want victim then first", b)
	}
}

// Crash also ends the children that left the process group (Postgres's
// backends call setsid), as a real crash would leave them to die: one
// still alive could hold what the new run needs.
func TestCrashEndsChildrenOutsideTheGroup(t *testing.T) {
	g := newGroup(t, Options{})
	pidFile := filepath.Join(t.TempDir(), "child")
	spec := sh("parent", `setsid sh -c 'echo $$ > `+pidFile+`; exec sleep 60' & echo run; wait`)
	spec.Ready = func(context.Context) error { _, err := os.Stat(pidFile); return err }
	if _, err := g.Start(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the pid is written before exec
	b, _ := os.ReadFile(pidFile)
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Crash(context.Background(), "parent"); err != nil {
		t.Fatal(err)
	}
	if alive(child) {
		_ = syscall.Kill(child, syscall.SIGKILL)
		t.Fatalf("the setsid child %d outlived the crash", child)
	}
}

// Replace runs the next run beside the old one until it is ready, then
// lets the old one end by itself (a hot restart): no failure is reported,
// and a next run that never becomes ready leaves the old one supervised.
func TestReplace(t *testing.T) {
	g := newGroup(t, Options{})
	dir := t.TempDir()
	handover := filepath.Join(dir, "handover")
	// The old run serves until the new one tells it to go (Envoy's
	// parent shutdown), then exits 0 by itself.
	old := sh("proxy", `echo epoch0; while [ ! -f `+handover+` ]; do sleep 0.05; done; exit 0`)
	old.Ready = logged(g, "proxy", "epoch0", 1)
	if _, err := g.Start(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	first := g.Proc("proxy")

	broken := sh("proxy", `exit 3`)
	broken.Ready = logged(g, "proxy", "never", 1)
	if _, err := g.Replace(context.Background(), broken, time.Second); err == nil {
		t.Fatal("Replace with a run that exits at once: no error")
	}
	if g.Proc("proxy") != first || first.Exited() {
		t.Fatal("after a failed Replace the old run is not the supervised one")
	}

	next := sh("proxy", `echo epoch1; touch `+handover+`; while :; do sleep 0.05; done`)
	next.Ready = logged(g, "proxy", "epoch1", 1)
	p, err := g.Replace(context.Background(), next, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Exited() || p.Exited() || g.Proc("proxy") != p {
		t.Fatalf("old exited %v, new running %v, supervised %v", first.Exited(), !p.Exited(), g.Proc("proxy") == p)
	}
	select {
	case err := <-g.Failed():
		t.Fatalf("the old run's own exit was reported: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := g.Replace(context.Background(), sh("nonexistent", "true"), time.Second); err == nil {
		t.Fatal("Replace of an unknown name: no error")
	}
}
