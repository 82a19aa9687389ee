package usage_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/usage"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

// machines authenticates "Bearer good-<client>" as that client; check's
// Authenticate (tested in extauthz/check) is the real one.
type machines struct{}

func (machines) Authenticate(_ context.Context, authorization, apiKey string) (*check.Principal, error) {
	if authorization == "Bearer down" {
		return nil, fmt.Errorf("%w (test)", check.ErrUnavailable)
	}
	if c, ok := strings.CutPrefix(authorization, "Bearer good-"); ok {
		return &check.Principal{ClientID: c}, nil
	}
	if c, ok := strings.CutPrefix(apiKey, "hx_good-"); ok {
		return &check.Principal{ClientID: c}, nil
	}
	return nil, fmt.Errorf("%w (test)", check.ErrUnauthenticated)
}

type apiEnv struct {
	mux                     *http.ServeMux
	api                     *usage.API
	orgA, orgB              string
	owner, viewer, outsider string
	now                     time.Time
}

// newAPIEnv: organization A (owner and a viewer) with clients client-a
// and client-a2, organization B with client-b, and usage for each in two
// hours of one day and one hour of the next.
func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	dsn := pgtest.Migrated(t)
	st := peopletest.Store(t, dsn)
	pool := pgtest.Pool(t, dsn)
	e := &apiEnv{now: hour0.Add(30*time.Hour + 30*time.Minute)}
	e.owner = peopletest.AddUser(t, pool, peopletest.User{Email: "owner@example.com", Verified: true})
	e.viewer = peopletest.AddUser(t, pool, peopletest.User{Email: "viewer@example.com", Verified: true})
	e.outsider = peopletest.AddUser(t, pool, peopletest.User{Email: "out@example.com", Verified: true})
	e.orgA = peopletest.AddOrg(t, st, e.owner, store.Org{Name: "A"})
	e.orgB = peopletest.AddOrg(t, st, e.outsider, store.Org{Name: "B"})
	if err := st.AddMember(ctx(t), e.orgA, e.viewer, "viewer"); err != nil {
		t.Fatal(err)
	}
	orgOf := map[string]string{"client-a": e.orgA, "client-a2": e.orgA, "client-b": e.orgB}
	us := usage.NewStore(pool)
	rows := []*usagev1.UsageRow{
		row(hour0, "client-a", "resnet", 10), row(hour0.Add(time.Hour), "client-a", "resnet", 5),
		row(hour0, "client-a2", "bert", 1), row(hour0.Add(24*time.Hour), "client-a", "resnet", 7),
		row(hour0, "client-b", "resnet", 100),
	}
	rows[0].LatencyBuckets = buckets(map[int]uint64{0: 5, 10: 5})
	if _, err := us.Apply(ctx(t), &usagev1.RecordRequest{Reporter: "worker/w/b", Seq: 1, Rows: rows},
		func(c string) string { return orgOf[c] }); err != nil {
		t.Fatal(err)
	}
	e.api = usage.NewAPI(usage.APIConfig{Store: us, Members: st, Machines: machines{},
		IsPersonToken: func(_ context.Context, raw string) bool { return raw == "good-helixctl-person" },
		Logger:        slog.New(slog.DiscardHandler), Now: func() time.Time { return e.now }})
	e.mux = http.NewServeMux()
	// The principal comes from the test (the session middleware is tested
	// in extauthz/session): header X-Test-User, X-Test-Scopes for a bearer.
	people := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u := r.Header.Get("X-Test-User"); u != "" {
				p := session.Principal{UserID: u, Via: session.ViaCookie}
				if s, ok := r.Header["X-Test-Scopes"]; ok {
					p.Via, p.Scopes = session.ViaBearer, strings.Fields(s[0])
				}
				r = r.WithContext(session.WithPrincipal(r.Context(), p))
			}
			h.ServeHTTP(w, r)
		})
	}
	e.api.Mount(e.mux, people)
	e.mux.Handle("GET /admin/v1/usage", http.HandlerFunc(e.api.AdminUsage))
	return e
}

func (e *apiEnv) get(t *testing.T, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.mux.ServeHTTP(w, r)
	return w
}

func decodeReport(t *testing.T, w *httptest.ResponseRecorder) usage.Report {
	t.Helper()
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var rep usage.Report
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		t.Fatalf("decode %s: %v", w.Body, err)
	}
	return rep
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) (int, string, string) {
	t.Helper()
	var b struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return w.Code, b.Error, b.Description
}

func TestOrgUsage(t *testing.T) {
	e := newAPIEnv(t)
	path := "/api/v1/orgs/" + e.orgA + "/usage"
	rep := decodeReport(t, e.get(t, path, "X-Test-User", e.viewer))
	// Default range: the 7 days up to the end of the current hour.
	if !rep.To.Equal(hour0.Add(31*time.Hour)) || !rep.From.Equal(rep.To.Add(-usage.DefaultRange)) || rep.Granularity != "hour" {
		t.Fatalf("range %s..%s %s", rep.From, rep.To, rep.Granularity)
	}
	if len(rep.Rows) != 4 {
		t.Fatalf("rows %+v: want organization A's 4", rep.Rows)
	}
	for _, r := range rep.Rows {
		if r.ClientID == "client-b" {
			t.Fatalf("another organization's row: %+v", r)
		}
	}
	first := rep.Rows[0]
	if first.ClientID != "client-a" || !first.Start.Equal(hour0) || first.Requests != 10 || first.Inferences != 20 || first.ComputeSeconds != 0.01 {
		t.Fatalf("first row %+v", first)
	}
	if first.LatencyP50Ms == nil || *first.LatencyP50Ms != 1 || first.LatencyP99Ms == nil || *first.LatencyP99Ms <= 1000 {
		t.Fatalf("quantiles %v %v: want p50 1 ms (the first bucket's bound), p99 within (1 s, 2 s]", first.LatencyP50Ms, first.LatencyP99Ms)
	}
	if rep.Totals.Requests != 23 || rep.Totals.Inferences != 46 {
		t.Fatalf("totals %+v", rep.Totals)
	}
	// Per day, one model.
	rep = decodeReport(t, e.get(t, path+"?granularity=day&model=resnet&from=2026-12-01&to=2026-12-02", "X-Test-User", e.owner))
	if len(rep.Rows) != 2 || rep.Rows[0].Requests != 15 || rep.Rows[1].Requests != 7 || !rep.Rows[1].Start.Equal(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("per day: %+v", rep.Rows)
	}
	// A bearer needs scope account.
	if code, _, desc := errorOf(t, e.get(t, path, "X-Test-User", e.owner, "X-Test-Scopes", "openid")); code != 403 || !strings.Contains(desc, "account") {
		t.Fatalf("bearer without account: %d %s", code, desc)
	}
	if w := e.get(t, path, "X-Test-User", e.owner, "X-Test-Scopes", "openid account"); w.Code != 200 {
		t.Fatalf("bearer with account: %d %s", w.Code, w.Body)
	}
}

func TestOrgUsageRefusals(t *testing.T) {
	e := newAPIEnv(t)
	tests := []struct {
		name, path, user string
		code             int
		errCode, names   string
	}{
		{"nobody", "/api/v1/orgs/" + e.orgA + "/usage", "", 401, "unauthorized", "sign in"},
		{"another organization's member", "/api/v1/orgs/" + e.orgA + "/usage", e.outsider, 404, "not_found", "organization"},
		{"an unknown organization", "/api/v1/orgs/" + e.orgB[:30] + "000000/usage", e.owner, 404, "not_found", "organization"},
		{"not an id", "/api/v1/orgs/x'%20OR%201=1--/usage", e.owner, 404, "not_found", "organization"},
	}
	for _, p := range []struct{ q, names string }{
		{"granularity=week", "granularity"},
		{"format=xml", "format"},
		{"from=yesterday", "from"},
		{"to=2026-13-01", "to"},
		{"from=2026-01-01&to=2026-12-01", "at most 93 days"},
		{"from=2026-12-02&to=2026-12-01T00:00:00Z", "must be after"},
		{"model=../etc", "model"},
		{"client=%00", "client"},
		{"limit=5", `unknown parameter "limit"`},
		{"model=a&model=b", "model given 2 times"},
		{"from=1900-01-01", "from"},
	} {
		tests = append(tests, struct {
			name, path, user string
			code             int
			errCode, names   string
		}{"bad " + p.q, "/api/v1/orgs/" + e.orgA + "/usage?" + p.q, e.viewer, 400, "invalid_request", p.names})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.user != "" {
				hdr = []string{"X-Test-User", tt.user}
			}
			code, ec, desc := errorOf(t, e.get(t, tt.path, hdr...))
			if code != tt.code || ec != tt.errCode || !strings.Contains(desc, tt.names) {
				t.Fatalf("%d %s %q; want %d %s naming %q", code, ec, desc, tt.code, tt.errCode, tt.names)
			}
		})
	}
	w := httptest.NewRecorder()
	e.mux.ServeHTTP(w, httptest.NewRequest("POST", "/api/v1/orgs/"+e.orgA+"/usage", nil))
	if w.Code != 405 {
		t.Fatalf("POST: %d", w.Code)
	}
}

func TestUsageCSV(t *testing.T) {
	e := newAPIEnv(t)
	w := e.get(t, "/api/v1/orgs/"+e.orgA+"/usage?format=csv&from=2026-12-01", "X-Test-User", e.viewer)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/csv") || !strings.Contains(w.Header().Get("Content-Disposition"), "attachment") {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	recs, err := csv.NewReader(w.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != strings.Join(usage.CSVHeader, ",") || len(recs) != 5 {
		t.Fatalf("CSV %q", recs)
	}
	if got := strings.Join(recs[1], ","); got != "2026-12-01T10:00:00Z,client-a,resnet,10,20,0,0,0.01,1.000,1980.000" {
		t.Fatalf("first row %q", got)
	}
}

// TestCSVDefusesFormulas: a client id a caller chose cannot become a
// spreadsheet formula.
func TestCSVDefusesFormulas(t *testing.T) {
	var b strings.Builder
	rep := &usage.Report{Rows: []usage.Row{{ClientID: "=HYPERLINK(\"x\")", Model: "m"}, {ClientID: "+1", Model: "-m"}}}
	if err := usage.WriteCSV(&b, rep); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if recs[1][1] != `'=HYPERLINK("x")` || recs[2][1] != "'+1" || recs[2][2] != "'-m" {
		t.Fatalf("CSV %q", recs)
	}
}

func TestClientUsage(t *testing.T) {
	e := newAPIEnv(t)
	rep := decodeReport(t, e.get(t, "/api/v1/usage?from=2026-12-01", "Authorization", "Bearer good-client-a"))
	if len(rep.Rows) != 3 || rep.Totals.Requests != 22 {
		t.Fatalf("client-a's own: %+v", rep)
	}
	for _, r := range rep.Rows {
		if r.ClientID != "client-a" {
			t.Fatalf("another client's row: %+v", r)
		}
	}
	// A filter naming another client finds nothing: the scope is the caller's.
	if rep := decodeReport(t, e.get(t, "/api/v1/usage?client=client-b", "X-Api-Key", "hx_good-client-a")); len(rep.Rows) != 0 {
		t.Fatalf("client filter escaped the caller's scope: %+v", rep.Rows)
	}
	// A person's token (its client, helixctl's, is every person's) is sent
	// to the organizations' report.
	if code, _, desc := errorOf(t, e.get(t, "/api/v1/usage", "Authorization", "Bearer good-helixctl-person")); code != 403 || !strings.Contains(desc, "/api/v1/orgs/{org}/usage") {
		t.Fatalf("a person's token: %d %s", code, desc)
	}
	for _, tt := range []struct {
		hdr  []string
		code int
	}{{nil, 401}, {[]string{"Authorization", "Bearer bad"}, 401}, {[]string{"Authorization", "Bearer down"}, 503}} {
		w := e.get(t, "/api/v1/usage", tt.hdr...)
		if code, _, _ := errorOf(t, w); code != tt.code {
			t.Fatalf("%v: %d, want %d", tt.hdr, code, tt.code)
		}
		if tt.code == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Fatalf("401 without WWW-Authenticate")
		}
	}
}

func TestAdminUsage(t *testing.T) {
	e := newAPIEnv(t)
	rep := decodeReport(t, e.get(t, "/admin/v1/usage?from=2026-12-01"))
	if rep.Totals.Requests != 123 {
		t.Fatalf("every organization: %+v", rep.Totals)
	}
	rep = decodeReport(t, e.get(t, "/admin/v1/usage?from=2026-12-01&org="+url.QueryEscape(e.orgB)))
	if len(rep.Rows) != 1 || rep.Rows[0].ClientID != "client-b" {
		t.Fatalf("org B: %+v", rep.Rows)
	}
	if code, _, desc := errorOf(t, e.get(t, "/admin/v1/usage?org=nope")); code != 400 || !strings.Contains(desc, "org") {
		t.Fatalf("bad org: %d %s", code, desc)
	}
	// The organizations' endpoint takes no org parameter.
	if code, _, _ := errorOf(t, e.get(t, "/api/v1/orgs/"+e.orgA+"/usage?org="+e.orgB, "X-Test-User", e.owner)); code != 400 {
		t.Fatalf("org parameter on the organizations' endpoint: %d", code)
	}
}
