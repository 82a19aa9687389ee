package oauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/sourcelimit"
)

// A source over its rate gets 429 with Retry-After and an OAuth2 error
// body on /oauth2/*, before any client lookup; other sources, and the
// metadata and JWKS, are served.
func TestLimitSources(t *testing.T) {
	e := newEnv(t)
	l, err := sourcelimit.New(sourcelimit.Config{Rate: 1, Burst: 3, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	h := LimitSources(e.h, l)
	do := func(remote, path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader("grant_type=client_credentials&token=x"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth("no-such-client", "x")
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i, p := range []string{PathToken, PathIntrospect, PathRevoke} {
		if w := do("203.0.113.1:1000", p); w.Code != http.StatusUnauthorized {
			t.Fatalf("request %d within the burst: %d %s", i, w.Code, w.Body)
		}
	}
	calls := e.clients.calls.Load()
	w := do("203.0.113.1:1001", PathToken)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("flood: %d %s", w.Code, w.Body)
	}
	if s, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", w.Header().Get("Retry-After"))
	}
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error != codeUnavailable || body.Description == "" {
		t.Fatalf("body %s (%v)", w.Body, err)
	}
	if w.Header().Get("Cache-Control") != "no-store" || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("headers %v", w.Header())
	}
	if got := e.clients.calls.Load(); got != calls {
		t.Fatalf("a refused request looked up a client (%d lookups)", got-calls)
	}
	if w := do("203.0.113.2:1000", PathToken); w.Code != http.StatusUnauthorized {
		t.Fatalf("another source: %d %s", w.Code, w.Body)
	}
	for _, p := range []string{PathJWKS, PathMetadata} {
		r := httptest.NewRequest(http.MethodGet, p, nil)
		r.RemoteAddr = "203.0.113.1:1002"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("%s from the limited source: %d", p, w.Code)
		}
	}
}
