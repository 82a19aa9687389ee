package admin_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
)

// fakeStore is an in-memory admin.Store for unit tests of the HTTP layer
// only; the Postgres store has its own tests. fail makes a method return an
// error; calls counts calls per method.
type fakeStore struct {
	mu      sync.Mutex
	now     time.Time
	clients map[string]store.Client
	keys    map[string]store.APIKey
	fail    map[string]error
	calls   map[string]int
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		now:     time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		clients: map[string]store.Client{},
		keys:    map[string]store.APIKey{},
		fail:    map[string]error{},
		calls:   map[string]int{},
	}
}

func (f *fakeStore) enter(method string) error {
	f.calls[method]++
	return f.fail[method]
}

func (f *fakeStore) setFail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

func (f *fakeStore) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// writes is how many changing calls the store saw.
func (f *fakeStore) writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range []string{"CreateClient", "UpdateClient", "SetClientSecret", "DeleteClient", "CreateAPIKey", "RevokeAPIKey"} {
		n += f.calls[m]
	}
	return n
}

func cloneClient(c store.Client) store.Client {
	c.SecretHash = slices.Clone(c.SecretHash)
	c.Scopes, c.Models, c.Audience = slices.Clone(c.Scopes), slices.Clone(c.Models), slices.Clone(c.Audience)
	return c
}

func cloneKey(k store.APIKey) store.APIKey {
	k.Hash, k.Scopes = slices.Clone(k.Hash), slices.Clone(k.Scopes)
	return k
}

func (f *fakeStore) client(id string) (store.Client, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clients[id]
	return cloneClient(c), ok
}

func (f *fakeStore) key(id string) (store.APIKey, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[id]
	return cloneKey(k), ok
}

func (f *fakeStore) CreateClient(_ context.Context, c *store.Client) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("CreateClient"); err != nil {
		return err
	}
	if _, ok := f.clients[c.ID]; ok {
		return store.ErrConflict
	}
	cp := cloneClient(*c)
	cp.CreatedAt, cp.UpdatedAt = f.now, f.now
	f.clients[c.ID] = cp
	return nil
}

func (f *fakeStore) GetClient(_ context.Context, id string) (*store.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetClient"); err != nil {
		return nil, err
	}
	c, ok := f.clients[id]
	if !ok {
		return nil, fmt.Errorf("fake: client: %w", store.ErrNotFound)
	}
	cp := cloneClient(c)
	return &cp, nil
}

func (f *fakeStore) ListClients(context.Context) ([]store.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("ListClients"); err != nil {
		return nil, err
	}
	var out []store.Client
	for _, c := range f.clients {
		out = append(out, cloneClient(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeStore) UpdateClient(_ context.Context, c *store.Client) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("UpdateClient"); err != nil {
		return err
	}
	old, ok := f.clients[c.ID]
	if !ok {
		return store.ErrNotFound
	}
	cp := cloneClient(*c)
	cp.SecretHash, cp.CreatedAt, cp.UpdatedAt = old.SecretHash, old.CreatedAt, f.now
	f.clients[c.ID] = cp
	return nil
}

func (f *fakeStore) SetClientSecret(_ context.Context, id string, hash []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("SetClientSecret"); err != nil {
		return err
	}
	c, ok := f.clients[id]
	if !ok || c.Public { // as the store: a public client has no secret to set
		return store.ErrNotFound
	}
	c.SecretHash = slices.Clone(hash)
	f.clients[id] = c
	return nil
}

func (f *fakeStore) DeleteClient(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DeleteClient"); err != nil {
		return err
	}
	if _, ok := f.clients[id]; !ok {
		return store.ErrNotFound
	}
	delete(f.clients, id)
	for kid, k := range f.keys {
		if k.ClientID == id {
			delete(f.keys, kid)
		}
	}
	return nil
}

func (f *fakeStore) CreateAPIKey(_ context.Context, k *store.APIKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("CreateAPIKey"); err != nil {
		return err
	}
	if _, ok := f.clients[k.ClientID]; !ok {
		return store.ErrNotFound
	}
	if _, ok := f.keys[k.ID]; ok {
		return store.ErrConflict
	}
	cp := cloneKey(*k)
	cp.CreatedAt = f.now
	f.keys[k.ID] = cp
	return nil
}

func (f *fakeStore) ListAPIKeys(_ context.Context, clientID string) ([]store.APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("ListAPIKeys"); err != nil {
		return nil, err
	}
	var out []store.APIKey
	for _, k := range f.keys {
		if clientID == "" || k.ClientID == clientID {
			out = append(out, cloneKey(k))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeStore) RevokeAPIKey(_ context.Context, idOrPrefix string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("RevokeAPIKey"); err != nil {
		return err
	}
	for id, k := range f.keys {
		if id == idOrPrefix || k.Prefix == idOrPrefix {
			if k.RevokedAt == nil {
				at := f.now
				k.RevokedAt = &at
			}
			f.keys[id] = k
			return nil
		}
	}
	return store.ErrNotFound
}

type fakeRotator struct {
	mu   sync.Mutex
	kids []string
	err  error
}

func (r *fakeRotator) Rotate(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return "", r.err
	}
	kid := fmt.Sprintf("kid-%d", len(r.kids)+1)
	r.kids = append(r.kids, kid)
	return kid, nil
}

const testToken = "0123456789abcdef0123456789abcdef-admin"

// testPlans are the gateway's plans in tests; "free" is the default.
var testPlans = []string{"free", "gold", "gold_2-x", "silver"}

// lockedBuffer collects log output written from handler goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type env struct {
	plans   *admin.Plans
	store   *fakeStore
	rotator *fakeRotator
	hasher  *secret.Hasher
	logs    *lockedBuffer
	handler http.Handler
	srv     *httptest.Server
	client  *admin.Client
	now     time.Time
}

// newEnv serves the admin API over a fake store; keys=false leaves out the
// key rotator.
func newEnv(t testing.TB, keys bool) *env {
	t.Helper()
	e := &env{
		plans:  admin.NewPlans(testPlans, "free"),
		store:  newFakeStore(),
		hasher: secret.NewHasher([]byte("pepper for tests")),
		logs:   &lockedBuffer{},
		now:    time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC),
	}
	cfg := admin.Config{
		Store: e.store, Hasher: e.hasher, Token: testToken, Plans: e.plans,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    func() time.Time { return e.now },
	}
	if keys {
		e.rotator = &fakeRotator{}
		cfg.Keys = e.rotator
	}
	h, err := admin.Handler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.handler = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	e.client, err = admin.NewClient(e.srv.URL, testToken, e.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// do sends one request with the admin token and returns status and body.
func (e *env) do(t testing.TB, method, path string, body io.Reader) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, body)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set(admin.OperatorHeader, "alice@ops")
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func (e *env) doString(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	return e.do(t, method, path, strings.NewReader(body))
}
