package portal

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// demoStub stands in for helix-authz's demo client (extauthz/server's
// DemoTokens, which needs the whole server): the token it mints, or its
// failure, and the requests it was asked for.
type demoStub struct {
	token string
	err   error
	asked []*http.Request
}

func (d *demoStub) DemoToken(r *http.Request) (string, int, error) {
	d.asked = append(d.asked, r)
	return d.token, 300, d.err
}

// withDemo is e's portal with its config changed (the pages shared).
func (e *dataEnv) withDemo(demo DemoTokens, model string, plans func() []Plan) *Portal {
	p := *e.portal
	p.cfg.Demo, p.cfg.DemoModel, p.cfg.Plans = demo, model, plans
	return &p
}

func serve(t *testing.T, h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// TestHomePage: the plans as configured (or none), the demo with its
// starting request for a shipped model and an empty one for another, a
// notice named by ?done=, and no demo when it is off.
func TestHomePage(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	plans := func() []Plan {
		return []Plan{{Name: "free", Default: true, RequestsPerSecond: 5}, {Name: "pro", RequestsPerMinute: 6000}}
	}
	for _, tc := range []struct {
		name      string
		p         *Portal
		path      string
		want, bad []string
	}{
		{"plans, no demo", e.withDemo(nil, "", plans), "/portal/",
			[]string{`free <span class="badge">default</span>`, "<td>5</td>", "<td>6000</td>", "<td>no limit</td>", `href="/portal/signup"`},
			[]string{"home.js", "demo-title", "This gateway has no plans"}},
		{"a demo model but no minter: no demo", e.withDemo(nil, "simple", nil), "/portal/",
			[]string{"This gateway has no plans"}, []string{"home.js", "demo-title"}},
		{"the shipped model's request", e.withDemo(&demoStub{}, "simple", nil), "/portal/",
			[]string{`src="/portal/assets/home.js"`, `data-infer="/v2/models/simple/infer"`, "&#34;INPUT0&#34;", "<code>simple</code>"}, nil},
		{"another model starts empty, its name escaped", e.withDemo(&demoStub{}, "my model", nil), "/portal/",
			[]string{`data-infer="/v2/models/my%20model/infer"`, "&#34;inputs&#34;: []"}, []string{"INPUT0"}},
		{"a notice", e.withDemo(nil, "", nil), "/portal/?done=deleted",
			[]string{`role="status">Your account is deleted.</p>`}, nil},
		{"an unknown notice", e.withDemo(nil, "", nil), "/portal/?done=%3Cscript%3E",
			nil, []string{`role="status"`, "script&gt;"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(t, tc.p.page(tc.p.home, false), httptest.NewRequest(http.MethodGet, tc.path, nil))
			p := page{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
			p.expect(t, http.StatusOK, tc.want...).lacks(t, tc.bad...)
		})
	}
}

// TestDemoToken: the demo's token endpoint answers the minter's token as
// JSON, 503 with Retry-After when it fails, 404 when the demo is off, and
// is a form like any other (origin and CSRF checked before minting).
func TestDemoToken(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	csrf := strings.Repeat("c", 43)
	post := func(p *Portal, origin, field string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, e.srv.URL+"/portal/demo/token", strings.NewReader(url.Values{"csrf": {field}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", origin)
		r.AddCookie(&http.Cookie{Name: csrfCookie, Value: csrf})
		return serve(t, p.page(p.demoToken, false), r)
	}
	decode := func(rec *httptest.ResponseRecorder) map[string]any {
		t.Helper()
		var m map[string]any
		if rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &m) != nil {
			t.Fatalf("not JSON: %v %q", rec.Header(), rec.Body.String())
		}
		return m
	}

	ok := &demoStub{token: "demo-token"}
	rec := post(e.withDemo(ok, "simple", nil), e.srv.URL, csrf)
	if got := decode(rec); rec.Code != http.StatusOK || got["access_token"] != "demo-token" || got["token_type"] != "Bearer" ||
		got["expires_in"] != 300.0 || got["model"] != "simple" {
		t.Fatalf("%d %v", rec.Code, got)
	}
	if len(ok.asked) != 1 || ok.asked[0].Header.Get("Origin") != e.srv.URL {
		t.Fatalf("the minter was asked %d times", len(ok.asked))
	}

	down := &demoStub{err: errors.New("the demo client is disabled")}
	rec = post(e.withDemo(down, "simple", nil), e.srv.URL, csrf)
	if got := decode(rec); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "30" ||
		got["error"] != "temporarily_unavailable" || strings.Contains(rec.Body.String(), "disabled") {
		t.Fatalf("%d %v %q", rec.Code, rec.Header(), rec.Body.String())
	}

	for name, p := range map[string]*Portal{"no minter": e.withDemo(nil, "simple", nil), "no model": e.withDemo(ok, "", nil)} {
		rec := post(p, e.srv.URL, csrf)
		if got := decode(rec); rec.Code != http.StatusNotFound || got["error"] != "not_found" {
			t.Errorf("%s: %d %v", name, rec.Code, got)
		}
	}

	// Refused forms never reach the minter.
	refused := &demoStub{token: "never"}
	p := e.withDemo(refused, "simple", nil)
	if rec := post(p, "https://evil.example", csrf); rec.Code != http.StatusForbidden {
		t.Errorf("another site: %d", rec.Code)
	}
	if rec := post(p, e.srv.URL, strings.Repeat("d", 43)); rec.Code != http.StatusForbidden {
		t.Errorf("a wrong CSRF field: %d", rec.Code)
	}
	if len(refused.asked) != 0 {
		t.Fatalf("a refused form minted %d tokens", len(refused.asked))
	}
}
