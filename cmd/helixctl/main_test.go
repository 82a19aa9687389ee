package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// memStore is an in-memory admin.Store: these tests are of the command
// line and the admin client, not of Postgres.
type memStore struct {
	mu      sync.Mutex
	clients map[string]store.Client
	keys    map[string]store.APIKey
}

func (m *memStore) CreateClient(_ context.Context, c *store.Client) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.clients[c.ID]; ok {
		return store.ErrConflict
	}
	m.clients[c.ID] = *c
	return nil
}

func (m *memStore) GetClient(_ context.Context, id string) (*store.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clients[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return &c, nil
}

func (m *memStore) ListClients(context.Context) ([]store.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Client
	for _, c := range m.clients {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *memStore) UpdateClient(_ context.Context, c *store.Client) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.clients[c.ID]; !ok {
		return store.ErrNotFound
	}
	m.clients[c.ID] = *c
	return nil
}

func (m *memStore) SetClientSecret(_ context.Context, id string, hash []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.clients[id]
	if !ok {
		return store.ErrNotFound
	}
	c.SecretHash = hash
	m.clients[id] = c
	return nil
}

func (m *memStore) DeleteClient(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.clients[id]; !ok {
		return store.ErrNotFound
	}
	delete(m.clients, id)
	return nil
}

func (m *memStore) CreateAPIKey(_ context.Context, k *store.APIKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[k.ID] = *k
	return nil
}

func (m *memStore) ListAPIKeys(_ context.Context, clientID string) ([]store.APIKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.APIKey
	for _, k := range m.keys {
		if clientID == "" || k.ClientID == clientID {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *memStore) RevokeAPIKey(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.keys[id]
	if !ok {
		return store.ErrNotFound
	}
	now := time.Now()
	k.RevokedAt = &now
	m.keys[id] = k
	return nil
}

type fakeRotator struct{ kid string }

func (r fakeRotator) Rotate(context.Context) (string, error) { return r.kid, nil }

const adminToken = "helixctl-test-token-0123456789abcdef"

type cli struct {
	store  *memStore
	hasher *secret.Hasher
	url    string
}

// newCLI serves the real admin API over a memStore and points helixctl at
// it through the environment.
func newCLI(t *testing.T) *cli {
	t.Helper()
	c := &cli{store: &memStore{clients: map[string]store.Client{}, keys: map[string]store.APIKey{}}, hasher: secret.NewHasher([]byte("p"))}
	h, err := admin.Handler(admin.Config{
		Store: c.store, Hasher: c.hasher, Keys: fakeRotator{kid: "kid-next"}, Token: adminToken,
		Plans:  admin.NewPlans([]string{"free", "gold", "silver"}, "free"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c.url = srv.URL
	t.Setenv("HELIX_ADMIN_URL", srv.URL)
	t.Setenv("HELIX_ADMIN_TOKEN", adminToken)
	t.Setenv("HELIX_DATABASE_URL", "")
	return c
}

func (c *cli) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, args, &out)
	return out.String(), err
}

func (c *cli) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(t, args...)
	if err != nil {
		t.Fatalf("helixctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestClientsCreateJSON(t *testing.T) {
	c := newCLI(t)
	out := c.mustRun(t, "clients", "create", "--scope", "models:infer", "--plan", "gold", "--output", "json")
	var v struct {
		ClientID     string   `json:"client_id"`
		ClientSecret string   `json:"client_secret"`
		Plan         string   `json:"plan"`
		Scopes       []string `json:"scopes"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if !strings.HasPrefix(v.ClientID, "hxc_") || v.ClientSecret == "" || v.Plan != "gold" || !slices.Equal(v.Scopes, []string{"models:infer"}) {
		t.Fatalf("created %+v", v)
	}
	stored, err := c.store.GetClient(context.Background(), v.ClientID)
	if err != nil || !c.hasher.Verify(stored.SecretHash, v.ClientSecret) || stored.Plan != "gold" {
		t.Fatalf("stored %+v, %v", stored, err)
	}

	// Repeated and comma-separated lists, flags in any order.
	out = c.mustRun(t, "clients", "create", "--output=json", "--scope", "models:resnet:infer,models:read",
		"--model", "resnet", "--model", "bert", "--name", "two words", "--disabled", "--audience", "https://a.example")
	var w admin.ClientView
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(w.Scopes, []string{"models:resnet:infer", "models:read"}) || !slices.Equal(w.Models, []string{"resnet", "bert"}) ||
		w.Name != "two words" || w.Enabled || !slices.Equal(w.Audience, []string{"https://a.example"}) {
		t.Errorf("created %+v", w)
	}
}

func TestClientsTable(t *testing.T) {
	c := newCLI(t)
	out := c.mustRun(t, "clients", "create", "--scope", "models:infer", "--name", "team")
	if !strings.Contains(out, "CLIENT ID") || !strings.Contains(out, "client_secret (shown once): ") {
		t.Fatalf("table output:\n%s", out)
	}
	ids, _ := c.store.ListClients(context.Background())
	if len(ids) != 1 {
		t.Fatalf("%d clients", len(ids))
	}
	id := ids[0].ID
	if !strings.Contains(out, id) {
		t.Errorf("create output lacks the client id %s:\n%s", id, out)
	}
	for _, args := range [][]string{{"clients", "list"}, {"clients", "get", id}} {
		out := c.mustRun(t, args...)
		if !strings.Contains(out, id) || !strings.Contains(out, "team") || !strings.Contains(out, "models:infer") {
			t.Errorf("%v:\n%s", args, out)
		}
		if strings.Contains(out, "secret") {
			t.Errorf("%v shows a secret:\n%s", args, out)
		}
	}

	// rotate-secret shows the new secret, once.
	out = c.mustRun(t, "clients", "rotate-secret", id)
	stored, _ := c.store.GetClient(context.Background(), id)
	sec := strings.TrimSpace(out[strings.LastIndex(out, ":")+1:])
	if !c.hasher.Verify(stored.SecretHash, sec) {
		t.Errorf("rotate-secret printed %q, which does not verify:\n%s", sec, out)
	}

	out = c.mustRun(t, "clients", "delete", id)
	if !strings.Contains(out, "deleted "+id) {
		t.Errorf("delete: %s", out)
	}
	_, err := c.run(t, "clients", "get", id)
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("get after delete: %v", err)
	}
}

// A new client gets the gateway's default plan and no model; create says
// how to grant models, and a plan the gateway lacks is refused, named.
func TestClientsCreateDefaults(t *testing.T) {
	c := newCLI(t)
	out := c.mustRun(t, "clients", "create", "--scope", "models:infer")
	cs, _ := c.store.ListClients(context.Background())
	if len(cs) != 1 || cs[0].Plan != "free" || len(cs[0].Models) != 0 {
		t.Fatalf("created %+v, want plan free and no model", cs)
	}
	if !strings.Contains(out, "helixctl clients update "+cs[0].ID+" --model") {
		t.Errorf("create does not say how to grant models:\n%s", out)
	}
	_, err := c.run(t, "clients", "create", "--scope", "models:infer", "--plan", "platinum")
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest ||
		!strings.Contains(apiErr.Message, `"platinum" is not a plan of the gateway (plans: free, gold, silver)`) {
		t.Errorf("unknown plan: %v", err)
	}
}

func TestClientsUpdate(t *testing.T) {
	c := newCLI(t)
	c.mustRun(t, "clients", "create", "--scope", "models:infer")
	cs, _ := c.store.ListClients(context.Background())
	id := cs[0].ID

	// Flags after the positional argument.
	c.mustRun(t, "clients", "update", id, "--disable", "--plan", "silver")
	got, _ := c.store.GetClient(context.Background(), id)
	if got.Enabled || got.Plan != "silver" || !slices.Equal(got.Scopes, []string{"models:infer"}) {
		t.Fatalf("after update: %+v", got)
	}
	// Flags before it.
	c.mustRun(t, "clients", "update", "--enable", id)
	if got, _ := c.store.GetClient(context.Background(), id); !got.Enabled || got.Plan != "silver" {
		t.Fatalf("after enable: %+v", got)
	}
	// No flag: nothing changes.
	c.mustRun(t, "clients", "update", id)
	if got, _ := c.store.GetClient(context.Background(), id); !got.Enabled || got.Plan != "silver" {
		t.Fatalf("after an empty update: %+v", got)
	}
	_, err := c.run(t, "clients", "update", id, "--enable", "--disable")
	if !errors.Is(err, errUsage) {
		t.Errorf("--enable --disable: %v", err)
	}
	// A bad value is the server's 400, named.
	_, err = c.run(t, "clients", "update", id, "--plan", "Not A Plan")
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.Contains(apiErr.Message, "plan") {
		t.Errorf("bad plan: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{
		{},
		{"clients"},
		{"frobnicate", "now"},
		{"clients", "frobnicate"},
		{"apikeys", "frobnicate"},
		{"keys", "frobnicate"},
		{"migrate", "sideways", "--database-url", "postgres://127.0.0.1:1/x"},
		{"clients", "get"},
		{"clients", "get", "a", "b"},
		{"clients", "list", "extra"},
		{"clients", "create", "extra", "--scope", "models:infer"},
		{"clients", "create", "--no-such-flag"},
		{"clients", "list", "--output", "yaml"},
		{"clients", "create", "--scope", "models:infer", "--output", "yaml"},
		{"apikeys", "list", "--output", "yaml"},
		{"keys", "rotate", "--output", "yaml"},
		{"keys", "rotate", "extra"},
		{"apikeys", "create"},
		{"apikeys", "create", "--scope", "models:infer"},
		{"apikeys", "revoke"},
		{"migrate", "status"},
		{"migrate", "up", "--output", "yaml", "--database-url", "postgres://127.0.0.1:1/x"},
	} {
		out, err := c.run(t, args...)
		if !errors.Is(err, errUsage) {
			t.Errorf("helixctl %q: %v, want a usage error", args, err)
		}
		if out != "" {
			t.Errorf("helixctl %q printed %q", args, out)
		}
	}
	// Nothing was created by any of them.
	if cs, _ := c.store.ListClients(context.Background()); len(cs) != 0 {
		t.Errorf("usage errors created %d clients", len(cs))
	}
	// An unknown subcommand is named as such, whatever else is missing.
	t.Setenv("HELIX_ADMIN_TOKEN", "")
	for _, args := range [][]string{
		{"clients", "frobnicate"}, {"clients", "frobnicate", "x"}, {"apikeys", "frobnicate"},
		{"keys", "frobnicate"}, {"keys", "frobnicate", "x"}, {"migrate", "sideways"},
	} {
		_, err := c.run(t, args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "unknown subcommand") {
			t.Errorf("helixctl %q: %v, want an unknown-subcommand usage error", args, err)
		}
	}
	t.Setenv("HELIX_ADMIN_TOKEN", adminToken)
	// -h is help, not an error of the command.
	if _, err := c.run(t, "clients", "list", "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestMissingAdminToken(t *testing.T) {
	c := newCLI(t)
	t.Setenv("HELIX_ADMIN_TOKEN", "")
	t.Setenv("HELIX_CREDENTIALS", filepath.Join(t.TempDir(), "nobody-signed-in.json"))
	_, err := c.run(t, "clients", "list")
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "admin token") {
		t.Fatalf("no token: %v, want an error naming the admin token", err)
	}
	dir := t.TempDir()
	wrong, right := filepath.Join(dir, "wrong"), filepath.Join(dir, "right")
	for f, v := range map[string]string{wrong: "wrong\n", right: adminToken + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A wrong one is the server's 401.
	_, err = c.run(t, "clients", "list", "--admin-token-file", wrong)
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error repeats the token: %v", err)
	}
	// The file wins over the environment.
	t.Setenv("HELIX_ADMIN_TOKEN", "wrong")
	if _, err := c.run(t, "clients", "list", "--admin-token-file", right); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run(t, "clients", "list", "--admin-token-file", filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "--admin-token-file") {
		t.Errorf("missing token file: %v", err)
	}
	// So does --admin-url.
	t.Setenv("HELIX_ADMIN_TOKEN", adminToken)
	t.Setenv("HELIX_ADMIN_URL", "http://127.0.0.1:1")
	if _, err := c.run(t, "clients", "list", "--admin-url", c.url); err != nil {
		t.Fatal(err)
	}
	if _, err := c.run(t, "clients", "list", "--admin-url", "not a url"); err == nil {
		t.Error("a bad --admin-url was accepted")
	}
}

// TestSecretsNotOnTheCommandLine: a secret given as a flag value is refused
// with an error that says what to use instead, before anything is sent.
func TestSecretsNotOnTheCommandLine(t *testing.T) {
	c := newCLI(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"clients", "list", "--admin-token", adminToken}, "--admin-token-file"},
		{[]string{"clients", "list", "--admin-token=" + adminToken}, "HELIX_ADMIN_TOKEN"},
		{[]string{"keys", "rotate", "--admin-token", adminToken}, "--admin-token-file"},
		{[]string{"migrate", "status", "--database-url", "postgres://helix:s3cret@127.0.0.1:1/helix"}, "HELIX_DATABASE_URL"},
	} {
		_, err := c.run(t, tt.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("helixctl %q: %v, want a usage error naming %s", tt.args, err, tt.want)
		}
		if err != nil && (strings.Contains(err.Error(), adminToken) || strings.Contains(err.Error(), "s3cret")) {
			t.Errorf("helixctl %q: the error repeats the secret: %v", tt.args, err)
		}
	}
}

// TestAdminTokenNotInClearOffLoopback: helixctl sends the admin token over
// plain http only to a loopback admin API.
func TestAdminTokenNotInClearOffLoopback(t *testing.T) {
	c := newCLI(t)
	for _, url := range []string{"http://10.0.0.1:8091", "http://helix-authz.example.com"} {
		_, err := c.run(t, "clients", "list", "--admin-url", url)
		if err == nil || !strings.Contains(err.Error(), "https") {
			t.Errorf("--admin-url %s: %v, want a refusal asking for https", url, err)
		}
	}
}

func TestAPIKeys(t *testing.T) {
	c := newCLI(t)
	c.mustRun(t, "clients", "create", "--scope", "models:infer")
	cs, _ := c.store.ListClients(context.Background())
	id := cs[0].ID

	out := c.mustRun(t, "apikeys", "create", "--client", id, "--scope", "models:resnet:infer", "--expires-in", "24h", "--name", "ci", "--output", "json")
	var k admin.APIKeyView
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatal(err)
	}
	if _, ok := secret.ParseAPIKey(k.Key); !ok || k.ClientID != id || k.ExpiresAt == nil || !slices.Equal(k.Scopes, []string{"models:resnet:infer"}) {
		t.Fatalf("key %+v", k)
	}
	c.store.mu.Lock()
	stored := c.store.keys[k.ID]
	c.store.mu.Unlock()
	if !c.hasher.Verify(stored.Hash, k.Key) {
		t.Error("the printed key does not verify")
	}

	out = c.mustRun(t, "apikeys", "create", "--client", id)
	if !strings.Contains(out, "key (shown once): hx_") {
		t.Errorf("table create:\n%s", out)
	}
	out = c.mustRun(t, "apikeys", "list", "--client", id)
	if !strings.Contains(out, k.ID) || strings.Contains(out, k.Key) || strings.Count(out, id) != 2 {
		t.Errorf("list:\n%s", out)
	}
	c.mustRun(t, "apikeys", "revoke", k.ID)
	out = c.mustRun(t, "apikeys", "list", "--output", "json")
	var ks []admin.APIKeyView
	if err := json.Unmarshal([]byte(out), &ks); err != nil || len(ks) != 2 {
		t.Fatalf("list json: %v\n%s", err, out)
	}
	for _, v := range ks {
		if v.Key != "" || (v.ID == k.ID) != (v.RevokedAt != nil) {
			t.Errorf("listed %+v", v)
		}
	}
	// Scopes beyond the client's are the server's 400.
	_, err := c.run(t, "apikeys", "create", "--client", id, "--scope", "models:read")
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Errorf("scope beyond the client: %v", err)
	}
}

func TestKeysRotate(t *testing.T) {
	c := newCLI(t)
	out := c.mustRun(t, "keys", "rotate")
	if !strings.Contains(out, "kid-next") {
		t.Errorf("table: %s", out)
	}
	out = c.mustRun(t, "keys", "rotate", "--output", "json")
	var v map[string]string
	if err := json.Unmarshal([]byte(out), &v); err != nil || v["kid"] != "kid-next" {
		t.Errorf("json: %v %s", err, out)
	}
}

func TestServerDown(t *testing.T) {
	c := newCLI(t)
	t.Setenv("HELIX_ADMIN_URL", "http://127.0.0.1:1")
	_, err := c.run(t, "clients", "list")
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "admin API") {
		t.Errorf("server down: %v", err)
	}
}
