package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/rolloutspec"
	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/translate"
)

// fakeProm answers Prometheus's /api/v1/query as a real one would, with
// the figures a test sets: the decisions below go through the controller's
// real client and parsing.
type fakeProm struct {
	requests, errors, p99 string // a sample's value; "" answers no series
	status                int    // non-zero: answer this HTTP status with an error body
	mu                    sync.Mutex
	queries               []string
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.FormValue("query")
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if f.status != 0 {
		w.WriteHeader(f.status)
		fmt.Fprint(w, `{"status":"error","errorType":"execution","error":"query timed out"}`)
		return
	}
	v := f.requests
	switch {
	case strings.Contains(q, "histogram_quantile"):
		v = f.p99
	case strings.Contains(q, "upstream_rq_xx"):
		v = f.errors
	}
	result := []any{}
	if v != "" {
		result = append(result, map[string]any{"metric": map[string]string{}, "value": []any{float64(time.Now().Unix()), v}})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
}

func ptr(f float64) *float64 { return &f }

func ptrTime(t time.Time) *time.Time { return &t }

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	base := Rollout{rolloutspec.Row{
		ID: 7, Model: "simple", FromVersion: "1", ToVersion: "2", Steps: []int{1, 5, 25, 50, 100},
		Interval: 5 * time.Minute, SLO: rolloutspec.SLO{ErrorRatio: ptr(0.01), P99Ms: ptr(200)}, Sticky: true,
		State: rolloutspec.StateRunning, Step: 1, Weight: 5, StepStartedAt: &t0,
	}}
	due := t0.Add(5 * time.Minute)
	healthy := fakeProm{requests: "1000", errors: "2", p99: "120"}
	with := func(f func(*Rollout)) Rollout { r := base; r.Steps = slices.Clone(base.Steps); f(&r); return r }
	for _, tc := range []struct {
		name       string
		row        Rollout
		now        time.Time
		prom       *fakeProm // nil: no --prometheus-url
		unreach    bool      // Prometheus's address answers nothing
		wantEvents []string
		wantResult string
		wantState  string
		wantStep   int
		wantWeight int
		wantReason string
	}{
		{name: "first step, no evaluation", row: with(func(r *Rollout) { r.Step, r.Weight, r.StepStartedAt = -1, 0, nil }), now: t0,
			wantEvents: []string{EventStart}, wantState: rolloutspec.StateRunning, wantStep: 0, wantWeight: 1, wantReason: "started: canary at 1%"},
		{name: "a single step of 100 completes at once", row: with(func(r *Rollout) { r.Steps, r.Step, r.Weight, r.StepStartedAt = []int{100}, -1, 0, nil }), now: t0,
			wantEvents: []string{EventStart, EventComplete}, wantState: rolloutspec.StateCompleted, wantStep: 0, wantWeight: 100},
		{name: "not due yet", row: base, now: due.Add(-time.Second), prom: &healthy,
			wantState: rolloutspec.StateRunning, wantStep: 1, wantWeight: 5},
		{name: "SLOs held: next step", row: base, now: due, prom: &healthy,
			wantEvents: []string{EventAdvance}, wantResult: ResultPass, wantState: rolloutspec.StateRunning, wantStep: 2, wantWeight: 25,
			wantReason: "error ratio 0.2% (2 of 1000 requests) < 1%, p99 120 ms < 200 ms over 5m0s: canary 5% → 25%"},
		{name: "SLOs held at the step before 100: completed", row: with(func(r *Rollout) { r.Step, r.Weight = 3, 50 }), now: due, prom: &healthy,
			wantEvents: []string{EventAdvance, EventComplete}, wantResult: ResultPass, wantState: rolloutspec.StateCompleted, wantStep: 4, wantWeight: 100},
		{name: "SLOs held at 100 (resumed there): completed", row: with(func(r *Rollout) { r.Step, r.Weight = 4, 100 }), now: due, prom: &healthy,
			wantEvents: []string{EventComplete}, wantResult: ResultPass, wantState: rolloutspec.StateCompleted, wantStep: 4, wantWeight: 100},
		{name: "error ratio broken: rolled back at once", row: base, now: due, prom: &fakeProm{requests: "200", errors: "25", p99: "100"},
			wantEvents: []string{EventRollback}, wantResult: ResultFail, wantState: rolloutspec.StateRolledBack, wantStep: 1, wantWeight: 0,
			wantReason: "error ratio 12.5% (25 of 200 requests) is not below 1% over 5m0s: rolled back"},
		{name: "error ratio at the bar is broken", row: base, now: due, prom: &fakeProm{requests: "100", errors: "1", p99: "100"},
			wantEvents: []string{EventRollback}, wantResult: ResultFail, wantState: rolloutspec.StateRolledBack, wantWeight: 0, wantStep: 1},
		{name: "p99 broken", row: base, now: due, prom: &fakeProm{requests: "1000", errors: "0", p99: "350.5"},
			wantEvents: []string{EventRollback}, wantResult: ResultFail, wantState: rolloutspec.StateRolledBack, wantStep: 1, wantWeight: 0,
			wantReason: "p99 350.5 ms is not below 200 ms over 5m0s: rolled back"},
		{name: "no series: hold", row: base, now: due, prom: &fakeProm{},
			wantEvents: []string{EventHold}, wantResult: ResultNoData, wantState: rolloutspec.StateRunning, wantStep: 1, wantWeight: 5,
			wantReason: "no requests reached the canary in the last 5m0s: holding at 5%"},
		{name: "no requests in the window: hold", row: base, now: due, prom: &fakeProm{requests: "0", errors: "0", p99: "NaN"},
			wantEvents: []string{EventHold}, wantResult: ResultNoData, wantState: rolloutspec.StateRunning, wantStep: 1, wantWeight: 5},
		{name: "no latency samples with a p99 bar: hold", row: base, now: due, prom: &fakeProm{requests: "10", errors: "0", p99: "NaN"},
			wantEvents: []string{EventHold}, wantResult: ResultNoData, wantState: rolloutspec.StateRunning, wantStep: 1, wantWeight: 5,
			wantReason: "no latency samples of the canary in the last 5m0s: holding at 5%"},
		{name: "no latency samples without a p99 bar: judged on errors", row: with(func(r *Rollout) { r.SLO.P99Ms = nil }), now: due,
			prom: &fakeProm{requests: "10", errors: "0"}, wantEvents: []string{EventAdvance}, wantResult: ResultPass, wantState: rolloutspec.StateRunning, wantStep: 2, wantWeight: 25},
		{name: "Prometheus erroring: hold", row: base, now: due, prom: &fakeProm{status: http.StatusServiceUnavailable},
			wantEvents: []string{EventHold}, wantResult: ResultPrometheusError, wantState: rolloutspec.StateRunning, wantStep: 1, wantWeight: 5,
			wantReason: "Prometheus: query of the canary's requests: server_error: server error: 503: holding at 5%"},
		{name: "Prometheus unreachable: hold", row: base, now: due, prom: &healthy, unreach: true,
			wantEvents: []string{EventHold}, wantResult: ResultPrometheusError, wantState: rolloutspec.StateRunning, wantStep: 1, wantWeight: 5,
			wantReason: "connection refused"},
		{name: "no Prometheus configured: hold", row: base, now: due,
			wantEvents: []string{EventHold}, wantResult: ResultPrometheusError, wantState: rolloutspec.StateRunning, wantStep: 1, wantWeight: 5,
			wantReason: "Prometheus: helix-xds has no --prometheus-url: holding at 5%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{MinWindow: DefaultMinWindow, QueryTimeout: 5 * time.Second, Logger: slog.Default()}
			if tc.prom != nil {
				srv := httptest.NewServer(tc.prom)
				url := srv.URL
				if tc.unreach {
					srv.Close()
				} else {
					t.Cleanup(srv.Close)
				}
				p, err := NewPrometheus(url)
				if err != nil {
					t.Fatal(err)
				}
				cfg.Evaluator = p
			}
			c := newController(cfg)
			next, events, result := c.decide(context.Background(), tc.row, tc.now)
			if !slices.Equal(events, tc.wantEvents) || result != tc.wantResult {
				t.Fatalf("events %v result %q, want %v %q (reason %q)", events, result, tc.wantEvents, tc.wantResult, next.Reason)
			}
			if next.State != tc.wantState || next.Step != tc.wantStep || next.Weight != tc.wantWeight {
				t.Errorf("state %s step %d weight %d, want %s %d %d", next.State, next.Step, next.Weight, tc.wantState, tc.wantStep, tc.wantWeight)
			}
			if !strings.Contains(next.Reason, tc.wantReason) {
				t.Errorf("reason %q, want it to hold %q", next.Reason, tc.wantReason)
			}
			moved := len(events) > 0 && events[0] != EventHold
			if moved && (next.StepStartedAt == nil || !next.StepStartedAt.Equal(tc.now)) && next.State == rolloutspec.StateRunning {
				t.Errorf("step_started_at %v, want %v", next.StepStartedAt, tc.now)
			}
			if ended := next.State == rolloutspec.StateCompleted || next.State == rolloutspec.StateRolledBack; ended != (next.EndedAt != nil && next.EndedAt.Equal(tc.now)) {
				t.Errorf("state %s ended_at %v", next.State, next.EndedAt)
			}
		})
	}
}

// TestQueriesAskAboutTheCanary: the three queries select the canary's
// gRPC and REST clusters by their stat names, over the interval.
func TestQueriesAskAboutTheCanary(t *testing.T) {
	f := &fakeProm{requests: "10", errors: "0", p99: "5"}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	p, err := NewPrometheus(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		interval   time.Duration
		wantWindow string
	}{{5 * time.Minute, "offset 300s"}, {2 * time.Second, "offset 10s"}} {
		c := newController(Config{Evaluator: p, MinWindow: DefaultMinWindow, QueryTimeout: time.Second, Logger: slog.Default()})
		r := Rollout{rolloutspec.Row{ID: 1, Model: "mlp-v2", Steps: []int{50, 100}, Interval: tc.interval, SLO: rolloutspec.SLO{P99Ms: ptr(10)}, State: rolloutspec.StateRunning, Weight: 50, StepStartedAt: ptrTime(time.Unix(0, 0))}}
		f.queries = nil
		if _, events, _ := c.decide(context.Background(), r, time.Now()); !slices.Equal(events, []string{EventAdvance, EventComplete}) {
			t.Fatalf("events %v", events)
		}
		if len(f.queries) != 3 {
			t.Fatalf("queries %q, want 3", f.queries)
		}
		for _, q := range f.queries {
			if !strings.Contains(q, "helix-model-grpc_mlp-v2/canary") || !strings.Contains(q, "helix-model-http_mlp-v2/canary") || !strings.Contains(q, tc.wantWindow) {
				t.Errorf("query %s: want the canary's clusters over %s", q, tc.wantWindow)
			}
		}
	}
}

func TestTrafficOfEachState(t *testing.T) {
	for _, tc := range []struct {
		state  string
		canary int // -1: no override
	}{
		{rolloutspec.StateRunning, 25}, {rolloutspec.StatePaused, 25}, {rolloutspec.StateCompleted, 100}, {rolloutspec.StateRolledBack, 0}, {rolloutspec.StateAborted, 0}, {rolloutspec.StateReleased, -1},
	} {
		r := Rollout{rolloutspec.Row{Model: "m", FromVersion: "1", ToPool: "canary", Weight: 25, State: tc.state, Sticky: true}}
		got := r.Traffic()
		if tc.canary < 0 {
			if got != nil {
				t.Errorf("%s: %+v, want no override", tc.state, got)
			}
			continue
		}
		want := &ir.Traffic{Sticky: true, Variants: []ir.Variant{
			{Name: "stable", Version: "1", Weight: uint32(100 - tc.canary)},
			{Name: "canary", Pool: "canary", Weight: uint32(tc.canary)},
		}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %+v, want %+v", tc.state, got, want)
		}
	}
}

func TestCheckRefusesBadRows(t *testing.T) {
	good := rolloutspec.SLO{ErrorRatio: ptr(0.1)}
	for _, tc := range []struct {
		name string
		r    Rollout
		want string
	}{
		{"no steps", Rollout{rolloutspec.Row{ID: 7, SLO: good}}, "rollout 7: steps: required"},
		{"decreasing", Rollout{rolloutspec.Row{Steps: []int{5, 1, 100}, SLO: good}}, "steps[1]: 1 is not above steps[0] (5)"},
		{"over 100", Rollout{rolloutspec.Row{Steps: []int{5, 101}, SLO: good}}, "steps[1]: 101 is outside 1..100"},
		{"last not 100", Rollout{rolloutspec.Row{Steps: []int{5, 50}, SLO: good}}, "the last step is 100"},
		{"step past the end", Rollout{rolloutspec.Row{Steps: []int{100}, Step: 1, SLO: good}}, "step 1 of 1 steps"},
		{"no bars", Rollout{rolloutspec.Row{Steps: []int{100}}}, "slo: required: error_ratio and/or p99_ms"},
		// The same rules as helix-authz's (internal/rolloutspec): a bar
		// it would refuse is refused here too.
		{"error ratio above 1", Rollout{rolloutspec.Row{Steps: []int{100}, SLO: rolloutspec.SLO{ErrorRatio: ptr(2.0)}}}, "slo.error_ratio: 2 is outside (0, 1]"},
	} {
		err := tc.r.check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := (&Rollout{rolloutspec.Row{Steps: []int{1, 100}, SLO: good}}).check(); err != nil {
		t.Errorf("good row: %v", err)
	}
}

// The queries' cluster matchers select exactly the canary's two clusters,
// by their stat names (translate.ClusterStatName): never model
// <model>_canary's own clusters, whatever characters the model name holds
// (regex metacharacters and quotes are escaped; Prometheus anchors label
// regexes, as done here).
func TestQueriesMatchOnlyTheCanary(t *testing.T) {
	matcher := regexp.MustCompile(`envoy_cluster_name(=~|=)("(?:[^"\\]|\\.)*")`)
	for _, model := range []string{"simple", `a.b+c"d|e(f)`, "mlp_v2"} {
		canary := []string{translate.ClusterStatName(translate.GRPCVariantCluster(model, VariantCanary)),
			translate.ClusterStatName(translate.HTTPVariantCluster(model, VariantCanary))}
		others := []string{translate.ClusterStatName(translate.GRPCCluster(model + "_canary")), translate.ClusterStatName(translate.HTTPCluster(model + "_canary")),
			translate.ClusterStatName(translate.GRPCVariantCluster(model, VariantStable)), translate.ClusterStatName(translate.GRPCCluster(model)), "a", "simple/canary"}
		requests, errors, p99 := Queries(model, time.Minute)
		for _, q := range []string{requests, errors, p99} {
			ms := matcher.FindAllStringSubmatch(q, -1)
			if len(ms) == 0 {
				t.Fatalf("%s: no cluster matcher", q)
			}
			for _, m := range ms {
				v, err := strconv.Unquote(m[2])
				if err != nil {
					t.Fatalf("%s: %s: %v", q, m[2], err)
				}
				match := func(name string) bool { return name == v }
				if m[1] == "=~" {
					match = regexp.MustCompile("^(?:" + v + ")$").MatchString
				}
				for _, n := range others {
					if match(n) {
						t.Errorf("model %q: %s%s matches %q", model, m[1], m[2], n)
					}
				}
				if !match(canary[0]) && !match(canary[1]) {
					t.Errorf("model %q: %s%s matches neither of the canary's %q", model, m[1], m[2], canary)
				}
			}
		}
	}
}
