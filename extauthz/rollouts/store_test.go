package rollouts_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/rollouts"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/rolloutspec"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// newStore is a Store on a fresh, migrated database of the shared server,
// with the pool for the controller's side of the table.
func newStore(t *testing.T) (*rollouts.Store, func(sql string, args ...any)) {
	t.Helper()
	pool := pgtest.Pool(t, pgtest.Migrated(t))
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx(t), sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	return rollouts.NewStore(pool), exec
}

func create(t *testing.T, s *rollouts.Store, model string) *rollouts.Rollout {
	t.Helper()
	req := valid()
	req.Model = model
	ro, err := req.Check(served, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx(t), ro); err != nil {
		t.Fatal(err)
	}
	return ro
}

func TestCreateAndRead(t *testing.T) {
	s, _ := newStore(t)
	ro := create(t, s, "simple")
	if ro.ID == 0 || ro.CreatedAt.IsZero() || ro.State != rolloutspec.StateRunning || ro.Step != -1 || ro.Weight != 0 ||
		ro.StepStartedAt != nil || ro.EndedAt != nil {
		t.Fatalf("created %+v", ro)
	}
	got, err := s.Get(ctx(t), ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Model != "simple" || got.FromVersion != "1" || got.ToVersion != "2" || !slices.Equal(got.Steps, []int{1, 5, 25, 50, 100}) ||
		got.Interval != 5*time.Minute || got.SLO.String() != "error_ratio<0.01,p99_ms<200" || !got.Sticky || got.CreatedBy != "alice" {
		t.Fatalf("read back %+v", got)
	}
	if _, err := s.Get(ctx(t), ro.ID+100); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of no rollout: %v", err)
	}
}

// TestOneInProgress: a second rollout of a model while one is in progress
// is refused naming the first (the unique index); other models and ended
// rollouts do not stand in the way.
func TestOneInProgress(t *testing.T) {
	s, _ := newStore(t)
	first := create(t, s, "simple")
	create(t, s, "other")
	req := valid()
	ro, _ := req.Check(served, "bob")
	err := s.Create(ctx(t), ro)
	var ip *rollouts.InProgressError
	if !errors.As(err, &ip) || !errors.Is(err, store.ErrConflict) || ip.Running == nil || ip.Running.ID != first.ID {
		t.Fatalf("second rollout: %v", err)
	}
	if want := "has rollout " + strconv.FormatInt(first.ID, 10) + " in progress (running, canary at 0%)"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q lacks %q", err, want)
	}
	// Paused is in progress too.
	if _, err := s.Pause(ctx(t), first.ID, "paused by alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx(t), ro); !errors.As(err, &ip) {
		t.Fatalf("while paused: %v", err)
	}
	if _, err := s.Abort(ctx(t), first.ID, "aborted by alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx(t), ro); err != nil {
		t.Fatalf("after the abort: %v", err)
	}
	list, err := s.List(ctx(t), "simple", 10)
	if err != nil || len(list) != 2 || list[0].ID != ro.ID || list[1].ID != first.ID {
		t.Fatalf("List(simple) = %v, %v", list, err)
	}
	all, err := s.List(ctx(t), "", 10)
	if err != nil || len(all) != 3 {
		t.Fatalf("List() = %d rollouts, %v", len(all), err)
	}
	if one, err := s.List(ctx(t), "", 1); err != nil || len(one) != 1 || one[0].ID != ro.ID {
		t.Fatalf("List(limit 1) = %v, %v", one, err)
	}
	if none, err := s.List(ctx(t), "nobody", 10); err != nil || none == nil || len(none) != 0 {
		t.Fatalf("List(nobody) = %#v, %v", none, err)
	}
	if _, err := s.List(ctx(t), "", 0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("List(limit 0): %v", err)
	}
}

// TestTransitions walks the operator's state changes and the ones refused.
func TestTransitions(t *testing.T) {
	s, exec := newStore(t)
	ro := create(t, s, "simple")
	c := ctx(t)

	if _, err := s.Resume(c, ro.ID, "x"); !isState(err, rolloutspec.StateRunning) {
		t.Fatalf("resume of a running rollout: %v", err)
	}
	p, err := s.Pause(c, ro.ID, "paused by alice")
	if err != nil || p.State != rolloutspec.StatePaused || p.Reason != "paused by alice" || !p.UpdatedAt.After(ro.UpdatedAt) {
		t.Fatalf("pause: %+v, %v", p, err)
	}
	if _, err := s.Pause(c, ro.ID, "x"); !isState(err, rolloutspec.StatePaused) {
		t.Fatalf("pause of a paused rollout: %v", err)
	}
	// Before the first step, a resume starts no step.
	r, err := s.Resume(c, ro.ID, "resumed by alice")
	if err != nil || r.State != rolloutspec.StateRunning || r.StepStartedAt != nil {
		t.Fatalf("resume before the first step: %+v, %v", r, err)
	}
	// The controller applies steps (its writes, as xds/rollout makes them);
	// a resume restarts the step under way, so that its evaluation covers a
	// whole interval after the pause.
	exec(`UPDATE rollouts SET step = 1, weight = 5, step_started_at = now() - interval '1 hour' WHERE id = $1`, ro.ID)
	if _, err := s.Pause(c, ro.ID, "p"); err != nil {
		t.Fatal(err)
	}
	r, err = s.Resume(c, ro.ID, "r")
	if err != nil || r.Weight != 5 || r.Step != 1 || r.StepStartedAt == nil || time.Since(*r.StepStartedAt) > time.Minute {
		t.Fatalf("resume within a step: %+v, %v", r, err)
	}
	a, err := s.Abort(c, ro.ID, "aborted by alice")
	if err != nil || a.State != rolloutspec.StateAborted || a.Weight != 0 || a.EndedAt == nil || a.Reason != "aborted by alice" {
		t.Fatalf("abort: %+v, %v", a, err)
	}
	for name, f := range map[string]func(context.Context, int64, string) (*rollouts.Rollout, error){"pause": s.Pause, "resume": s.Resume, "abort": s.Abort} {
		if _, err := f(c, ro.ID, "x"); !isState(err, rolloutspec.StateAborted) {
			t.Errorf("%s of an aborted rollout: %v", name, err)
		}
		if _, err := f(c, ro.ID+100, "x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s of no rollout: %v", name, err)
		}
	}
}

func isState(err error, state string) bool {
	var se *rollouts.StateError
	return errors.As(err, &se) && se.State == state && errors.Is(err, store.ErrConflict)
}

// TestRelease: only a model's latest rollout, once it has ended, is
// released; a rollout in progress is refused; nothing to release is
// ErrNotFound.
func TestRelease(t *testing.T) {
	s, exec := newStore(t)
	c := ctx(t)
	if _, err := s.Release(c, "simple", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("release with no rollout: %v", err)
	}
	ro := create(t, s, "simple")
	_, err := s.Release(c, "simple", "x")
	var se *rollouts.StateError
	if !errors.As(err, &se) || se.State != rolloutspec.StateRunning || !strings.Contains(err.Error(), "release applies to a rollout that is completed or rolled_back or aborted") {
		t.Fatalf("release of a running rollout: %v", err)
	}
	for _, state := range rolloutspec.Ended {
		// The controller's end states (completed, rolled_back), or the
		// operator's abort.
		exec(`UPDATE rollouts SET state = $2, weight = CASE WHEN $2 = 'completed' THEN 100 ELSE 0 END, ended_at = now() WHERE id = $1`, ro.ID, state)
		r, err := s.Release(c, "simple", "released by alice")
		if err != nil || r.ID != ro.ID || r.State != rolloutspec.StateReleased || r.EndedAt == nil || r.Reason != "released by alice" {
			t.Fatalf("release of a %s rollout: %+v, %v", state, r, err)
		}
		if _, err := s.Release(c, "simple", "x"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second release: %v", err)
		}
		ro = create(t, s, "simple")
	}
	// Only the latest: an older ended rollout is not the one released.
	if _, err := s.Abort(c, ro.ID, "a"); err != nil {
		t.Fatal(err)
	}
	newer := create(t, s, "simple")
	if _, err := s.Release(c, "simple", "x"); !isState(err, rolloutspec.StateRunning) {
		t.Fatalf("release while the latest runs: %v", err)
	}
	if got, _ := s.Get(c, ro.ID); got.State != rolloutspec.StateAborted {
		t.Fatalf("older rollout became %s", got.State)
	}
	_ = newer
}
