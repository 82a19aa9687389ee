package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
)

// In-memory fakes of the three store interfaces, for unit tests of the
// HTTP and fosite wiring only; the Postgres stores are tested elsewhere.

type fakeClients struct {
	mu      sync.Mutex
	clients map[string]*store.Client
	err     error
	calls   atomic.Int64
	// failID fails its lookups after failAfter successful ones.
	failID    string
	failAfter int
}

// unavailableAfter makes lookups of id fail as a down database after n
// more successful ones.
func (f *fakeClients) unavailableAfter(t testing.TB, id string, n int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failID, f.failAfter = id, n
}

func (f *fakeClients) GetClient(_ context.Context, id string) (*store.Client, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if id == "down" {
		return nil, fmt.Errorf("fake: %w", store.ErrUnavailable)
	}
	if id == f.failID {
		if f.failAfter == 0 {
			return nil, fmt.Errorf("fake: %w", store.ErrUnavailable)
		}
		f.failAfter--
	}
	c, ok := f.clients[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	cp := *c
	return &cp, nil
}

func (f *fakeClients) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

type fakeRevocations struct {
	mu      sync.Mutex
	revoked map[string]time.Time
	err     error
}

func (f *fakeRevocations) RevokeToken(_ context.Context, jti string, exp time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.revoked[jti] = exp
	return nil
}

func (f *fakeRevocations) IsRevoked(_ context.Context, jti string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	_, ok := f.revoked[jti]
	return ok, nil
}

func (f *fakeRevocations) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

type fakeKeys struct {
	mu     sync.Mutex
	kid    string
	alg    string
	signer crypto.Signer
	jwks   []byte
	err    error
}

func newFakeKeys(t testing.TB, alg string) *fakeKeys {
	t.Helper()
	var signer crypto.Signer
	var err error
	switch alg {
	case "ES256":
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKeys{kid: "kid-" + strings.ToLower(alg), alg: alg, signer: signer}
	k.jwks = jwksOf(t, jose.JSONWebKey{Key: signer.Public(), KeyID: k.kid, Algorithm: alg, Use: "sig"})
	return k
}

func jwksOf(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (k *fakeKeys) SigningKey(context.Context) (string, string, crypto.Signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return "", "", nil, k.err
	}
	return k.kid, k.alg, k.signer, nil
}

func (k *fakeKeys) JWKS(context.Context) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return nil, k.err
	}
	return k.jwks, nil
}

func (k *fakeKeys) setErr(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.err = err
}

// clock is a settable clock.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

const (
	testIssuer   = "https://authz.helix.test"
	testAudience = "helix-inference"
	testPepper   = "pepper-for-tests-0123456789abcdef"
)

// env is a Server with fakes and two clients ("alpha", "beta") whose
// secrets are known, plus a disabled one ("gamma").
type env struct {
	srv     *Server
	h       http.Handler
	clients *fakeClients
	revoked *fakeRevocations
	keys    *fakeKeys
	clock   *clock
	secrets map[string]string
}

type envOption func(*Config)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	return newEnvKeys(t, newFakeKeys(t, "ES256"), opts...)
}

func newEnvKeys(t testing.TB, keys *fakeKeys, opts ...envOption) *env {
	t.Helper()
	hasher := secret.NewHasher([]byte(testPepper))
	e := &env{
		clients: &fakeClients{clients: map[string]*store.Client{}},
		revoked: &fakeRevocations{revoked: map[string]time.Time{}},
		keys:    keys,
		clock:   newClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)),
		secrets: map[string]string{},
	}
	for _, c := range []store.Client{
		{ID: "alpha", Scopes: []string{"models:infer", "models:read"}, Models: []string{"resnet50", "bert"},
			Audience: []string{"https://api.helix.test"}, Plan: "gold", Enabled: true},
		{ID: "beta", Scopes: []string{"models:read"}, Models: []string{"*"}, Plan: "free", Enabled: true},
		{ID: "gamma", Scopes: []string{"models:infer"}, Plan: "free", Enabled: false},
	} {
		s, err := secret.NewClientSecret()
		if err != nil {
			t.Fatal(err)
		}
		c.SecretHash = hasher.Hash(s)
		e.secrets[c.ID] = s
		e.clients.clients[c.ID] = &c
	}
	cfg := Config{
		Issuer:          testIssuer,
		DefaultAudience: testAudience,
		Clients:         e.clients,
		Revocations:     e.revoked,
		Keys:            e.keys,
		Hasher:          hasher,
		ScopesSupported: []string{"models:infer", "models:read"},
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:             e.clock.now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.h = srv, srv.Handler()
	return e
}

// request is one call to the handler.
type request struct {
	method string
	path   string
	form   url.Values
	body   string // used when form is nil
	ctype  string // default: urlencoded
	basic  []string
	header map[string]string
}

func (e *env) do(t testing.TB, rq request) *httptest.ResponseRecorder {
	t.Helper()
	if rq.method == "" {
		rq.method = http.MethodPost
	}
	body := rq.body
	if rq.form != nil {
		body = rq.form.Encode()
	}
	r := httptest.NewRequest(rq.method, rq.path, strings.NewReader(body))
	if rq.ctype == "" {
		rq.ctype = "application/x-www-form-urlencoded"
	}
	r.Header.Set("Content-Type", rq.ctype)
	if rq.basic != nil {
		r.SetBasicAuth(url.QueryEscape(rq.basic[0]), url.QueryEscape(rq.basic[1]))
	}
	for k, v := range rq.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// basic is the client's credentials for HTTP Basic.
func (e *env) basic(id string) []string { return []string{id, e.secrets[id]} }

// issue gets a token for id with extra form parameters and fails the test
// unless it is issued.
func (e *env) issue(t testing.TB, id string, extra url.Values) tokenResponse {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range extra {
		form[k] = v
	}
	w := e.do(t, request{path: PathToken, form: form, basic: e.basic(id)})
	if w.Code != http.StatusOK {
		t.Fatalf("token for %s: %d %s", id, w.Code, w.Body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func decodeError(t testing.TB, w *httptest.ResponseRecorder) errorResponse {
	t.Helper()
	var er errorResponse
	if err := json.Unmarshal(w.Body.Bytes(), &er); err != nil || er.Error == "" {
		t.Fatalf("body %q is not an OAuth2 error (%v)", w.Body, err)
	}
	return er
}
