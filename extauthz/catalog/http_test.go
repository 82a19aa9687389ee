package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/webapi"
)

// The HTTP tests use small stand-ins for the credential checks, each
// tested against real stores in its own package; extauthz/server's
// TestModelCatalogue runs the whole path with Postgres and a real
// helix-xds Catalog over mTLS.

type fakeSource struct {
	models []Model
	err    error
}

func (f *fakeSource) Models(context.Context) ([]Model, error) { return f.models, f.err }

type fakeMachines struct {
	byCred map[string]*check.Principal
	err    error
}

func (f *fakeMachines) Authenticate(_ context.Context, authorization, apiKey string) (*check.Principal, error) {
	if f.err != nil {
		return nil, f.err
	}
	if authorization != "" && apiKey != "" {
		return nil, fmt.Errorf("%w (malformed_credential)", check.ErrUnauthenticated)
	}
	if p, ok := f.byCred[authorization+apiKey]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("%w (invalid_token)", check.ErrUnauthenticated)
}

// fakeTokens: person tokens are "person-<user>"; "down" cannot be judged.
type fakeTokens struct{ calls int }

func (f *fakeTokens) VerifyUserToken(_ context.Context, raw string) (string, string, []string, error) {
	f.calls++
	switch {
	case raw == "down":
		return "", "", nil, fmt.Errorf("%w: database", session.ErrUnavailable)
	case strings.HasPrefix(raw, "person-"):
		return strings.TrimPrefix(raw, "person-"), "sid", []string{"account"}, nil
	}
	return "", "", nil, errors.New("not a person's token")
}

// fakeCookies: the cookie value names the user; "admin" is a platform admin.
type fakeCookies struct{ err error }

func (f fakeCookies) FromCookie(r *http.Request) (session.Principal, bool, error) {
	if f.err != nil {
		return session.Principal{}, false, f.err
	}
	c, err := r.Cookie(session.CookieName)
	if err != nil || c.Value == "dead" {
		return session.Principal{}, false, nil
	}
	return session.Principal{UserID: c.Value, Via: session.ViaCookie, PlatformAdmin: c.Value == "admin"}, true, nil
}

type fakePeople map[string][]string // user -> scopes of their organizations

func (f fakePeople) PersonScopes(_ context.Context, user string) (bool, []string, bool, error) {
	if user == "broken" {
		return false, nil, false, errors.New("database down")
	}
	s, ok := f[user]
	return false, s, ok, nil
}

var testModels = []Model{{Name: "a"}, {Name: "b"}, {Name: "simple"}}

func newTestHandler(src Source) (*http.ServeMux, *fakeTokens) {
	tokens := &fakeTokens{}
	h := NewHandler(HandlerConfig{
		Source: src,
		Machines: &fakeMachines{byCred: map[string]*check.Principal{
			"Bearer client-jwt": {ClientID: "c1", Scopes: []string{check.ScopeInfer}, Models: []string{"a", "simple"}},
			"Bearer hx_key":     {ClientID: "c2", Scopes: []string{"models:b:infer"}, Models: []string{"*"}},
			"hx_key":            {ClientID: "c2", Scopes: []string{"models:b:infer"}, Models: []string{"*"}},
		}},
		Cookies: fakeCookies{}, PersonTokens: tokens,
		People: fakePeople{"ann": {"models:simple:infer"}, "bob": {"models:read"}, "eve": nil, "admin": nil},
		Logger: slog.New(slog.DiscardHandler),
	})
	mux := http.NewServeMux()
	h.Mount(mux)
	return mux, tokens
}

type call struct {
	method, path string
	headers      map[string]string
	cookie       string
}

func (c call) do(t *testing.T, h http.Handler) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(c.method, c.path, nil)
	for k, v := range c.headers {
		req.Header.Add(k, v)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: c.cookie})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func listNames(t *testing.T, body []byte) []string {
	t.Helper()
	var l ListResponse
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
	out := []string{}
	for _, m := range l.Models {
		out = append(out, m.Name)
	}
	return out
}

func TestList(t *testing.T) {
	mux, _ := newTestHandler(&fakeSource{models: testModels})
	all := []string{"a", "b", "simple"}
	tests := []struct {
		name string
		call call
		want []string
	}{
		{"client token: infer on its list", call{headers: map[string]string{"Authorization": "Bearer client-jwt"}}, []string{"a", "simple"}},
		{"API key as bearer: its one model", call{headers: map[string]string{"Authorization": "Bearer hx_key"}}, []string{"b"}},
		{"API key header", call{headers: map[string]string{"X-Api-Key": "hx_key"}}, []string{"b"}},
		{"person's bearer: organization scopes", call{headers: map[string]string{"Authorization": "Bearer person-ann"}}, []string{"simple"}},
		{"person's cookie", call{cookie: "bob"}, all},
		{"platform admin's cookie", call{cookie: "admin"}, all},
		{"person in no organization", call{cookie: "eve"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.call.method, tt.call.path = http.MethodGet, PathModels
			code, body := tt.call.do(t, mux)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, body)
			}
			if got := listNames(t, body); !slices.Equal(got, tt.want) {
				t.Fatalf("models = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	down := &fakeSource{err: fmt.Errorf("%w: connection refused", ErrUnavailable)}
	mux, _ := newTestHandler(&fakeSource{models: testModels})
	downMux, _ := newTestHandler(down)
	offMux, _ := newTestHandler(nil)
	brokenMachines := NewHandler(HandlerConfig{Source: &fakeSource{models: testModels}, Logger: slog.New(slog.DiscardHandler),
		Machines: &fakeMachines{err: fmt.Errorf("%w (apikey_backend_unavailable)", check.ErrUnavailable)}})
	brokenMux := http.NewServeMux()
	brokenMachines.Mount(brokenMux)
	cookiesDown := NewHandler(HandlerConfig{Source: &fakeSource{models: testModels}, Logger: slog.New(slog.DiscardHandler),
		Cookies: fakeCookies{err: errors.New("db")}, People: fakePeople{}})
	cookiesDownMux := http.NewServeMux()
	cookiesDown.Mount(cookiesDownMux)

	tests := []struct {
		name     string
		h        http.Handler
		call     call
		status   int
		code     string
		describe string // in error_description
	}{
		{"no credential", mux, call{}, 401, webapi.CodeUnauthorized, "sign in"},
		{"dead cookie", mux, call{cookie: "dead"}, 401, webapi.CodeUnauthorized, "sign in"},
		{"bad token", mux, call{headers: map[string]string{"Authorization": "Bearer nope"}}, 401, webapi.CodeUnauthorized, "not valid"},
		{"basic auth", mux, call{headers: map[string]string{"Authorization": "Basic eDp5"}}, 401, webapi.CodeUnauthorized, "not valid"},
		{"two credentials", mux, call{headers: map[string]string{"Authorization": "Bearer client-jwt", "X-Api-Key": "hx_key"}}, 401, webapi.CodeUnauthorized, "not valid"},
		{"erased person", mux, call{headers: map[string]string{"Authorization": "Bearer person-gone"}}, 401, webapi.CodeUnauthorized, "no longer exists"},
		{"person tokens cannot be checked", mux, call{headers: map[string]string{"Authorization": "Bearer down"}}, 503, webapi.CodeUnavailable, "credentials"},
		{"organizations cannot be read", mux, call{cookie: "broken"}, 503, webapi.CodeUnavailable, "credentials"},
		{"sessions cannot be read", cookiesDownMux, call{cookie: "bob"}, 503, webapi.CodeUnavailable, "credentials"},
		{"keys cannot be checked", brokenMux, call{headers: map[string]string{"X-Api-Key": "hx_key"}}, 503, webapi.CodeUnavailable, "credentials"},
		{"helix-xds down", downMux, call{cookie: "bob"}, 503, webapi.CodeUnavailable, "cannot be read"},
		{"not configured: credentials first", offMux, call{}, 401, webapi.CodeUnauthorized, "sign in"},
		{"not configured", offMux, call{cookie: "bob"}, 503, webapi.CodeUnavailable, "not configured"},
		{"not configured, detail", offMux, call{path: PathModels + "/simple", headers: map[string]string{"X-Api-Key": "hx_key"}}, 503, webapi.CodeUnavailable, "not configured"},
		{"POST", mux, call{method: http.MethodPost, cookie: "bob"}, 405, webapi.CodeMethodNotAllowed, "GET"},
		{"DELETE a model", mux, call{method: http.MethodDelete, path: PathModels + "/a", cookie: "bob"}, 405, webapi.CodeMethodNotAllowed, "GET"},
		{"unknown model", mux, call{path: PathModels + "/zzz", cookie: "bob"}, 404, webapi.CodeNotFound, `"zzz"`},
		{"model the caller does not reach", mux, call{path: PathModels + "/b", cookie: "ann"}, 404, webapi.CodeNotFound, `"b"`},
		{"invalid model name", mux, call{path: PathModels + "/" + url.PathEscape("..x"), cookie: "bob"}, 400, webapi.CodeInvalidRequest, "model:"},
		{"model name with a script", mux, call{path: PathModels + "/" + url.PathEscape("<script> x"), cookie: "bob"}, 400, webapi.CodeInvalidRequest, "white space"},
		{"model name with SQL", mux, call{path: PathModels + "/" + url.PathEscape("a';DROP_TABLE_users;--"), cookie: "bob"}, 404, webapi.CodeNotFound, "not served"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.call.method == "" {
				tt.call.method = http.MethodGet
			}
			if tt.call.path == "" {
				tt.call.path = PathModels
			}
			code, body := tt.call.do(t, tt.h)
			var eb webapi.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil {
				t.Fatalf("%d %s: %v", code, body, err)
			}
			if code != tt.status || eb.Error != tt.code || !strings.Contains(eb.Description, tt.describe) {
				t.Fatalf("got %d %s; want %d %s containing %q", code, body, tt.status, tt.code, tt.describe)
			}
		})
	}
}

func TestGet(t *testing.T) {
	mux, tokens := newTestHandler(&fakeSource{models: []Model{{Name: "a"}, {Name: "simple", Ready: true, Versions: []string{"1"}}}})
	code, body := call{method: http.MethodGet, path: PathModels + "/simple", headers: map[string]string{"Authorization": "Bearer client-jwt"}}.do(t, mux)
	var m Model
	if code != http.StatusOK || json.Unmarshal(body, &m) != nil || m.Name != "simple" || !m.Ready {
		t.Fatalf("%d %s", code, body)
	}
	// A client's token is tried as a person's first, then the machine way.
	if tokens.calls != 1 {
		t.Fatalf("person-token checks = %d, want 1", tokens.calls)
	}
	// An API key is never a person's token.
	call{method: http.MethodGet, path: PathModels, headers: map[string]string{"Authorization": "Bearer hx_key"}}.do(t, mux)
	if tokens.calls != 1 {
		t.Fatalf("an API key was checked as a person's token")
	}
	code, _ = call{method: http.MethodHead, path: PathModels + "/simple", cookie: "bob"}.do(t, mux)
	if code != http.StatusOK {
		t.Fatalf("HEAD: %d", code)
	}
}
