package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/extauthz/rollouts"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/rolloutspec"
)

// servedModels stands in for helix-xds's model catalogue (tested in
// extauthz/catalog against a real gRPC server).
type servedModels []catalog.Model

func (m servedModels) Models(context.Context) ([]catalog.Model, error) { return m, nil }

// rolloutCLI serves the real admin API over the rollouts table and the
// audit trail on Postgres, and points helixctl at it.
func rolloutCLI(t *testing.T) (*cli, *audit.Store) {
	t.Helper()
	pool := pgtest.Pool(t, pgtest.Migrated(t))
	trail, _ := peopletest.Privacy(t, pool)
	h, err := admin.Handler(admin.Config{
		Store: &memStore{}, Hasher: secret.NewHasher(nil), Token: adminToken, Plans: admin.NewPlans([]string{"free"}, "free"),
		Audit: trail, Rollouts: rollouts.NewStore(pool), Logger: peopletest.Quiet,
		Models: servedModels{{Name: "simple", Versions: []string{"1", "2"}, Ready: true, Workers: 2, ReadyWorkers: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Setenv("HELIX_ADMIN_URL", srv.URL)
	t.Setenv("HELIX_ADMIN_TOKEN", adminToken)
	t.Setenv("HELIX_OPERATOR", "rel-eng")
	return &cli{url: srv.URL}, trail
}

func TestRolloutCommands(t *testing.T) {
	c, trail := rolloutCLI(t)
	out := c.mustRun(t, "rollout", "start", "simple", "--to", "2", "--steps", "10,50,100", "--interval", "30s",
		"--slo", "error_ratio<0.02,p99_ms<150")
	for _, want := range []string{"ID", "simple", "running", "0%", "v1", "v2", "error_ratio<0.02,p99_ms<150", "30s",
		"helix-xds applies the first step (10%)", "helixctl rollout status simple"} {
		if !strings.Contains(out, want) {
			t.Errorf("start output lacks %q:\n%s", want, out)
		}
	}
	var list []admin.RolloutView
	if err := json.Unmarshal([]byte(c.mustRun(t, "rollout", "status", "--output", "json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("status --output json: %v, %v", list, err)
	}
	ro := list[0]
	if ro.FromVersion != "1" || ro.ToVersion != "2" || !slices.Equal(ro.Steps, []int{10, 50, 100}) || ro.Interval != "30s" || !ro.Sticky ||
		ro.CreatedBy != "admin-token" || *ro.SLO.ErrorRatio != 0.02 || *ro.SLO.P99Ms != 150 {
		t.Fatalf("started %+v", ro)
	}
	id := fmt.Sprint(ro.ID)

	// A second start for the model names the running one.
	_, err := c.run(t, "rollout", "start", "simple", "--to", "2", "--slo", "p99_ms<100")
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 409 || !strings.Contains(err.Error(), "has rollout "+id+" in progress") {
		t.Fatalf("second start: %v", err)
	}
	for _, step := range []struct{ sub, state string }{{"pause", "paused"}, {"resume", "running"}, {"abort", "aborted"}} {
		out := c.mustRun(t, "rollout", step.sub, id)
		if !strings.Contains(out, step.state) || !strings.Contains(out, step.sub[:len(step.sub)-1]) {
			t.Errorf("rollout %s:\n%s", step.sub, out)
		}
		rows, err := trail.List(context.Background(), audit.Filter{Action: "rollout." + step.sub, Limit: 1})
		if err != nil || len(rows) != 1 || rows[0].Operator != "rel-eng" || rows[0].Target != "rollout:"+id {
			t.Errorf("audit of %s: %+v, %v", step.sub, rows, err)
		}
	}
	if _, err := c.run(t, "rollout", "pause", id); !errors.As(err, &apiErr) || apiErr.Status != 409 || !strings.Contains(err.Error(), "is aborted") {
		t.Fatalf("pause of an aborted rollout: %v", err)
	}
	if out := c.mustRun(t, "rollout", "release", "simple"); !strings.Contains(out, "released") {
		t.Errorf("release:\n%s", out)
	}
	out = c.mustRun(t, "rollout", "status", "simple")
	if !strings.Contains(out, "released by admin-token") {
		t.Errorf("status simple:\n%s", out)
	}
	if out := c.mustRun(t, "rollout", "status", "nobody"); strings.Count(out, "\n") != 1 {
		t.Errorf("status of a model without rollouts:\n%s", out)
	}
	// By pool alone, per request.
	out = c.mustRun(t, "rollout", "start", "simple", "--to-pool", "canary", "--slo", "error_ratio<0.1", "--no-sticky", "--output", "json")
	var byPool admin.RolloutView
	if err := json.Unmarshal([]byte(out), &byPool); err != nil || byPool.FromPool != "default" || byPool.ToPool != "canary" || byPool.Sticky ||
		!slices.Equal(byPool.Steps, rolloutspec.DefaultSteps) || byPool.Interval != "5m0s" {
		t.Fatalf("start by pool: %+v, %v", byPool, err)
	}
	// The server's checks reach the user as they are.
	if _, err := c.run(t, "rollout", "start", "other", "--to", "2", "--slo", "p99_ms<100"); err == nil ||
		!strings.Contains(err.Error(), `model: "other" is not served`) {
		t.Fatalf("start of an unserved model: %v", err)
	}
}

// TestRolloutUsage: bad flags are usage errors naming the flag, refused
// before anything is sent.
func TestRolloutUsage(t *testing.T) {
	t.Setenv("HELIX_ADMIN_URL", "http://127.0.0.1:1") // nothing listens: a request would fail otherwise
	t.Setenv("HELIX_ADMIN_TOKEN", adminToken)
	c := &cli{}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "start"}, "rollout start takes a model name"},
		{[]string{"rollout", "start", "simple", "--slo", "p99_ms<1"}, "--to VERSION or --to-pool POOL is required"},
		{[]string{"rollout", "start", "simple", "--to", "2"}, "--slo is required"},
		{[]string{"rollout", "start", "simple", "--to", "2", "--slo", "p99<200"}, `--slo "p99<200": "p99<200": unknown SLO "p99" (error_ratio or p99_ms)`},
		{[]string{"rollout", "start", "simple", "--to", "2", "--slo", "error_ratio>0.01"}, "want name<number"},
		{[]string{"rollout", "start", "simple", "--to", "2", "--slo", "error_ratio<2"}, "slo.error_ratio: 2 is outside (0, 1]"},
		{[]string{"rollout", "start", "simple", "--to", "2", "--slo", "p99_ms<1", "--steps", "1,5,50"}, `--steps "1,5,50": steps: the last step is 100`},
		{[]string{"rollout", "start", "simple", "--to", "2", "--slo", "p99_ms<1", "--steps", "5,1,100"}, "steps[1]: 1 is not above steps[0] (5)"},
		{[]string{"rollout", "start", "simple", "--to", "2", "--slo", "p99_ms<1", "--steps", "a"}, `steps[0]: "a" is not a whole percentage`},
		{[]string{"rollout", "start", "simple", "--to", "2", "--slo", "p99_ms<1", "--interval", "500ms"}, "--interval: 500ms is outside 1s..24h0m0s"},
		{[]string{"rollout", "start", "simple", "--to", "2", "--slo", "p99_ms<1", "--interval", "soon"}, "invalid value \"soon\" for flag -interval"},
		{[]string{"rollout", "pause"}, "rollout pause takes a rollout id"},
		{[]string{"rollout", "abort", "x"}, `rollout abort: "x" is not a rollout id`},
		{[]string{"rollout", "resume", "0"}, `"0" is not a rollout id`},
		{[]string{"rollout", "status", "a", "b"}, "rollout status takes at most a model name"},
		{[]string{"rollout", "status", "--limit", "0"}, "--limit 0: want 1 to 1000"},
		{[]string{"rollout", "release"}, "rollout release takes a model name"},
		{[]string{"rollout", "restart", "1"}, `unknown subcommand rollout "restart"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, err := c.run(t, tt.args...)
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v; want a usage error with %q", err, tt.want)
			}
			if out != "" {
				t.Errorf("printed %q", out)
			}
		})
	}
}
