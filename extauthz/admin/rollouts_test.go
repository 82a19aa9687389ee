package admin_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/extauthz/rollouts"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/rolloutspec"
)

// models stands in for helix-xds's model catalogue (catalog.Client, tested
// in extauthz/catalog against a real gRPC server): what it answers, or
// err.
type models struct {
	mu   sync.Mutex
	list []catalog.Model
	err  error
}

func (m *models) Models(context.Context) ([]catalog.Model, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.list, m.err
}

func (m *models) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

type rolloutEnv struct {
	handler http.Handler
	client  *admin.Client
	trail   *audit.Store
	pool    *pgxpool.Pool
	models  *models
}

// newRolloutEnv serves the admin API with the rollouts table and the audit
// trail on a real Postgres.
func newRolloutEnv(t *testing.T) *rolloutEnv {
	t.Helper()
	pool := pgtest.Pool(t, pgtest.Migrated(t))
	trail, _ := peopletest.Privacy(t, pool)
	e := &rolloutEnv{trail: trail, pool: pool, models: &models{list: []catalog.Model{
		{Name: "simple", Versions: []string{"1", "2", "3"}, Ready: true, Workers: 2, ReadyWorkers: 2},
		{Name: "other", Versions: []string{"1"}, Ready: true, Workers: 1, ReadyWorkers: 1},
	}}}
	h, err := admin.Handler(admin.Config{
		Store: newFakeStore(), Hasher: secret.NewHasher(nil), Token: testToken, Plans: admin.NewPlans(testPlans, "free"),
		Audit: trail, Rollouts: rollouts.NewStore(pool), Models: e.models, Logger: peopletest.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.handler = h
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if e.client, err = admin.NewClient(srv.URL, testToken, srv.Client()); err != nil {
		t.Fatal(err)
	}
	e.client.Operator = "alice@ops"
	return e
}

func (e *rolloutEnv) do(method, path, body string) (int, string) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set(admin.OperatorHeader, "alice@ops")
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// lastAudit is the newest audit row of action.
func (e *rolloutEnv) lastAudit(t *testing.T, action string) audit.Row {
	t.Helper()
	rows, err := e.trail.List(context.Background(), audit.Filter{Action: action, Limit: 1})
	if err != nil || len(rows) != 1 {
		t.Fatalf("audit rows of %s: %v, %v", action, rows, err)
	}
	return rows[0]
}

func startRequest() rollouts.Request {
	er, p99 := 0.01, 200.0
	return rollouts.Request{Model: "simple", ToVersion: "3", Steps: []int{1, 50, 100}, Interval: "30s",
		SLO: &rolloutspec.SLO{ErrorRatio: &er, P99Ms: &p99}}
}

// TestRolloutLifecycle drives every rollout endpoint through admin.Client:
// start (the row the controller reads), list, get, pause, resume, abort,
// release, each audited with the operator.
func TestRolloutLifecycle(t *testing.T) {
	e := newRolloutEnv(t)
	ctx := context.Background()
	ro, err := e.client.StartRollout(ctx, startRequest())
	if err != nil {
		t.Fatal(err)
	}
	if ro.ID == 0 || ro.Model != "simple" || ro.FromVersion != "2" || ro.ToVersion != "3" || ro.State != rolloutspec.StateRunning ||
		ro.Step != -1 || ro.Weight != 0 || ro.Interval != "30s" || !ro.Sticky || ro.CreatedBy != "admin-token" || fmt.Sprint(ro.Steps) != "[1 50 100]" {
		t.Fatalf("started %+v", ro)
	}
	// What the controller reads.
	var state, slo string
	var intervalMs int64
	if err := e.pool.QueryRow(ctx, `SELECT state, interval_ms, slo::text FROM rollouts WHERE id = $1`, ro.ID).Scan(&state, &intervalMs, &slo); err != nil {
		t.Fatal(err)
	}
	if state != "running" || intervalMs != 30000 || slo != `{"p99_ms": 200, "error_ratio": 0.01}` {
		t.Errorf("row: %s %d %s", state, intervalMs, slo)
	}
	ev := e.lastAudit(t, "rollout.start")
	if ev.Actor != "admin-token" || ev.Operator != "alice@ops" || ev.Target != fmt.Sprintf("rollout:%d", ro.ID) || ev.Result != audit.ResultSuccess ||
		ev.Detail["model"] != "simple" || ev.Detail["to_version"] != "3" || ev.Detail["steps"] != "1,50,100" || ev.Detail["slo"] != "error_ratio<0.01,p99_ms<200" {
		t.Errorf("audit %+v", ev)
	}

	// A second one for the model: 409 naming the first.
	_, err = e.client.StartRollout(ctx, startRequest())
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusConflict ||
		!strings.Contains(apiErr.Message, fmt.Sprintf(`model "simple" has rollout %d in progress (running`, ro.ID)) {
		t.Fatalf("second start: %v", err)
	}
	if ev := e.lastAudit(t, "rollout.start"); ev.Result != audit.ResultFailure || ev.Target != "model:simple" {
		t.Errorf("audit of the refused start %+v", ev)
	}
	other := startRequest()
	other.Model, other.ToVersion, other.ToPool = "other", "", "canary"
	o, err := e.client.StartRollout(ctx, other)
	if err != nil || o.FromPool != "default" || o.ToPool != "canary" || o.FromVersion != "" {
		t.Fatalf("rollout by pool: %+v, %v", o, err)
	}

	list, err := e.client.ListRollouts(ctx, "", 0)
	if err != nil || len(list) != 2 || list[0].ID != o.ID || list[1].ID != ro.ID {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if list, err = e.client.ListRollouts(ctx, "simple", 5); err != nil || len(list) != 1 || list[0].ID != ro.ID {
		t.Fatalf("list of simple: %+v, %v", list, err)
	}
	if got, err := e.client.GetRollout(ctx, ro.ID); err != nil || got.ID != ro.ID || got.SLO.String() != "error_ratio<0.01,p99_ms<200" {
		t.Fatalf("get: %+v, %v", got, err)
	}

	steps := []struct {
		action, state string
	}{{"pause", rolloutspec.StatePaused}, {"resume", rolloutspec.StateRunning}, {"abort", rolloutspec.StateAborted}}
	for _, s := range steps {
		got, err := e.client.RolloutAction(ctx, ro.ID, s.action)
		if err != nil || got.State != s.state {
			t.Fatalf("%s: %+v, %v", s.action, got, err)
		}
		ev := e.lastAudit(t, "rollout."+s.action)
		if ev.Operator != "alice@ops" || ev.Target != fmt.Sprintf("rollout:%d", ro.ID) || ev.Result != audit.ResultSuccess || ev.Detail["state"] != s.state {
			t.Errorf("audit of %s: %+v", s.action, ev)
		}
	}
	ab, _ := e.client.GetRollout(ctx, ro.ID)
	if ab.Weight != 0 || ab.EndedAt == nil || ab.Reason != "aborted by admin-token" {
		t.Errorf("aborted %+v", ab)
	}
	// No change applies to an aborted rollout but release.
	for _, action := range []string{"pause", "resume", "abort"} {
		_, err := e.client.RolloutAction(ctx, ro.ID, action)
		if apiErr := asAPIError(t, err); apiErr.Status != http.StatusConflict ||
			!strings.Contains(apiErr.Message, fmt.Sprintf("rollout %d is aborted: %s applies to a rollout that is", ro.ID, action)) {
			t.Errorf("%s of an aborted rollout: %v", action, err)
		}
		if ev := e.lastAudit(t, "rollout."+action); ev.Result != audit.ResultFailure {
			t.Errorf("audit of the refused %s: %+v", action, ev)
		}
	}
	// The running one of "other" cannot be released; simple's aborted can.
	_, err = e.client.ReleaseRollout(ctx, "other")
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusConflict || !strings.Contains(apiErr.Message, "is running") {
		t.Fatalf("release of a running rollout: %v", err)
	}
	rel, err := e.client.ReleaseRollout(ctx, "simple")
	if err != nil || rel.ID != ro.ID || rel.State != rolloutspec.StateReleased {
		t.Fatalf("release: %+v, %v", rel, err)
	}
	if ev := e.lastAudit(t, "rollout.release"); ev.Target != fmt.Sprintf("rollout:%d", ro.ID) || ev.Result != audit.ResultSuccess {
		t.Errorf("audit of release %+v", ev)
	}
	_, err = e.client.ReleaseRollout(ctx, "simple")
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusNotFound || !strings.Contains(apiErr.Message, `model "simple" has no rollout to release`) {
		t.Fatalf("second release: %v", err)
	}
	_, err = e.client.GetRollout(ctx, ro.ID+100)
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusNotFound {
		t.Fatalf("get of no rollout: %v", err)
	}
	_, err = e.client.RolloutAction(ctx, ro.ID+100, "pause")
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusNotFound {
		t.Fatalf("pause of no rollout: %v", err)
	}
}

// TestRolloutRequestsRefused: bad requests are 400 naming the field, and
// nothing is written.
func TestRolloutRequestsRefused(t *testing.T) {
	e := newRolloutEnv(t)
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"empty body", "POST", "/admin/v1/rollouts", "", 400, "request body is empty"},
		{"unknown field", "POST", "/admin/v1/rollouts", `{"model":"simple","weight":5}`, 400, `unknown field "weight"`},
		{"bad model", "POST", "/admin/v1/rollouts", `{"model":"../x","to_version":"3"}`, 400, "model: "},
		{"model not served", "POST", "/admin/v1/rollouts",
			`{"model":"nobody","to_version":"3","steps":[100],"interval":"1m","slo":{"p99_ms":100}}`, 400, `model: "nobody" is not served`},
		{"version not served", "POST", "/admin/v1/rollouts",
			`{"model":"simple","to_version":"9","steps":[100],"interval":"1m","slo":{"p99_ms":100}}`, 400,
			`to_version: no ready worker serves version 9 of model "simple" (served: 1, 2, 3)`},
		{"steps not increasing", "POST", "/admin/v1/rollouts",
			`{"model":"simple","to_version":"3","steps":[50,20,100],"interval":"1m","slo":{"p99_ms":100}}`, 400, "steps[1]: 20 is not above steps[0] (50)"},
		{"steps as strings", "POST", "/admin/v1/rollouts", `{"model":"simple","steps":["1"]}`, 400, "malformed JSON"},
		{"interval too short", "POST", "/admin/v1/rollouts",
			`{"model":"simple","to_version":"3","steps":[100],"interval":"10ms","slo":{"p99_ms":100}}`, 400, "interval: 10ms is outside 1s..24h0m0s"},
		{"slo empty", "POST", "/admin/v1/rollouts",
			`{"model":"simple","to_version":"3","steps":[100],"interval":"1m","slo":{}}`, 400, "slo: required"},
		{"slo ratio", "POST", "/admin/v1/rollouts",
			`{"model":"simple","to_version":"3","steps":[100],"interval":"1m","slo":{"error_ratio":5}}`, 400, "slo.error_ratio: 5 is outside (0, 1]"},
		{"slo unknown", "POST", "/admin/v1/rollouts",
			`{"model":"simple","to_version":"3","steps":[100],"interval":"1m","slo":{"p50_ms":5}}`, 400, `unknown field "p50_ms"`},
		{"list bad model", "GET", "/admin/v1/rollouts?model=..", "", 400, "model: "},
		{"list bad limit", "GET", "/admin/v1/rollouts?limit=0", "", 400, `limit: "0" is not a whole number in 1..1000`},
		{"list limit too big", "GET", "/admin/v1/rollouts?limit=1001", "", 400, "limit: "},
		{"get bad id", "GET", "/admin/v1/rollouts/abc", "", 400, `id: "abc" is not a rollout id`},
		{"pause id 0", "POST", "/admin/v1/rollouts/0/pause", "", 400, `id: "0" is not a rollout id`},
		{"abort overflow id", "POST", "/admin/v1/rollouts/99999999999999999999/abort", "", 400, "is not a rollout id"},
		{"release bad model", "POST", "/admin/v1/models/..%2Fx/rollout/release", "", 400, "model: "},
		{"release no rollout", "POST", "/admin/v1/models/simple/rollout/release", "", 404, `model "simple" has no rollout to release`},
		{"unknown action", "POST", "/admin/v1/rollouts/1/restart", "", 404, "no such admin endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.do(tt.method, tt.path, tt.body)
			if code != tt.status || !strings.Contains(assertJSONError(t, body), tt.want) {
				t.Fatalf("%d %s; want %d with %q", code, body, tt.status, tt.want)
			}
		})
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM rollouts`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rollouts written, %v", n, err)
	}
}

// TestRolloutWithoutCatalogue: starting a rollout needs the catalogue: 503
// while helix-xds cannot answer, 501 without one; the rest works.
func TestRolloutWithoutCatalogue(t *testing.T) {
	e := newRolloutEnv(t)
	e.models.fail(fmt.Errorf("%w: helix-xds: connection refused", catalog.ErrUnavailable))
	_, err := e.client.StartRollout(context.Background(), startRequest())
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusServiceUnavailable || !strings.Contains(apiErr.Message, "model catalogue (helix-xds) cannot be read now") {
		t.Fatalf("start while helix-xds is down: %v", err)
	}
	e.models.fail(nil)
	if _, err := e.client.StartRollout(context.Background(), startRequest()); err != nil {
		t.Fatal(err)
	}

	pool := pgtest.Pool(t, pgtest.Migrated(t))
	h, err := admin.Handler(admin.Config{
		Store: newFakeStore(), Hasher: secret.NewHasher(nil), Token: testToken, Plans: admin.NewPlans(testPlans, "free"),
		Rollouts: rollouts.NewStore(pool), Logger: peopletest.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	off := &rolloutEnv{handler: h}
	if code, body := off.do("POST", "/admin/v1/rollouts", `{"model":"simple","to_version":"3"}`); code != http.StatusNotImplemented ||
		!strings.Contains(body, "--xds-address") {
		t.Fatalf("start without a catalogue: %d %s", code, body)
	}
	if code, body := off.do("GET", "/admin/v1/rollouts", ""); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Fatalf("list without a catalogue: %d %s", code, body)
	}
	// Without the table (a server not built with it) every rollout
	// endpoint says so.
	h, _ = admin.Handler(admin.Config{Store: newFakeStore(), Hasher: secret.NewHasher(nil), Token: testToken,
		Plans: admin.NewPlans(testPlans, "free"), Logger: peopletest.Quiet})
	none := &rolloutEnv{handler: h}
	for _, ep := range [][2]string{{"GET", "/admin/v1/rollouts"}, {"POST", "/admin/v1/rollouts/1/abort"}, {"POST", "/admin/v1/models/m/rollout/release"}} {
		if code, _ := none.do(ep[0], ep[1], ""); code != http.StatusNotImplemented {
			t.Errorf("%s %s without rollouts: %d", ep[0], ep[1], code)
		}
	}
}

// TestRolloutConcurrentStarts: of starts racing for one model, exactly one
// wins; the others are 409 (the unique index, not a read-then-write).
func TestRolloutConcurrentStarts(t *testing.T) {
	e := newRolloutEnv(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, errs[i] = e.client.StartRollout(ctx, startRequest())
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var apiErr *admin.APIError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusConflict:
		default:
			t.Errorf("start: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d starts succeeded, want 1", ok)
	}
}
