package admin_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/wire"
)

func TestHandlerConfig(t *testing.T) {
	s, h, p := newFakeStore(), secret.NewHasher(nil), admin.NewPlans(testPlans, "free")
	tests := []struct {
		name string
		cfg  admin.Config
		ok   bool
	}{
		{"no token", admin.Config{Store: s, Hasher: h, Plans: p}, false},
		{"31 characters", admin.Config{Store: s, Hasher: h, Plans: p, Token: strings.Repeat("x", 31)}, false},
		{"32 characters", admin.Config{Store: s, Hasher: h, Plans: p, Token: strings.Repeat("x", 32)}, true},
		{"no store", admin.Config{Hasher: h, Plans: p, Token: testToken}, false},
		{"no hasher", admin.Config{Store: s, Plans: p, Token: testToken}, false},
		// Without the gateway's plans, plan names cannot be checked.
		{"no plans", admin.Config{Store: s, Hasher: h, Token: testToken}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handler, err := admin.Handler(tt.cfg)
			if tt.ok != (err == nil) || tt.ok != (handler != nil) {
				t.Fatalf("Handler: (%v, %v), want ok=%v", handler, err, tt.ok)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, true)
	wrongSameLength := []byte(testToken)
	wrongSameLength[len(wrongSameLength)-1] ^= 1
	tests := []struct {
		name, header string
	}{
		{"no header", ""},
		{"no scheme", testToken},
		{"basic", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+testToken))},
		{"empty bearer", "Bearer "},
		{"wrong token of the same length", "Bearer " + string(wrongSameLength)},
		{"shorter token", "Bearer " + testToken[:32]},
		{"longer token", "Bearer " + testToken + "x"},
		{"token with a space", "Bearer  " + testToken},
	}
	for _, tt := range tests {
		for _, ep := range []struct{ method, path string }{
			{"GET", "/admin/v1/clients"},
			{"POST", "/admin/v1/clients"},
			{"DELETE", "/admin/v1/clients/x"},
			{"POST", "/admin/v1/keys/rotate"},
			{"GET", "/admin/v1/nothing-here"},
		} {
			t.Run(tt.name+" "+ep.method+" "+ep.path, func(t *testing.T) {
				req := httptest.NewRequest(ep.method, ep.path, strings.NewReader(`{"scopes":["models:infer"]}`))
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				rec := httptest.NewRecorder()
				e.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401; body %s", rec.Code, rec.Body)
				}
				if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
				}
				assertJSONError(t, rec.Body.String())
			})
		}
	}
	e.store.mu.Lock()
	calls := len(e.store.calls)
	e.store.mu.Unlock()
	if calls != 0 || len(e.rotator.kids) != 0 {
		t.Errorf("unauthenticated requests reached the store (%d methods) or rotator (%d)", calls, len(e.rotator.kids))
	}

	// The client with a wrong token gets a 401 APIError.
	bad, err := admin.NewClient(e.srv.URL, string(wrongSameLength), e.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.ListClients(context.Background())
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", apiErr.Status)
	}

	// The right token passes, and answers are not cached.
	code, body := e.doString(t, "GET", "/admin/v1/clients", "")
	if code != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Fatalf("with the token: %d %s", code, body)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/admin/v1/clients", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set(admin.OperatorHeader, "alice@ops")
	e.handler.ServeHTTP(rec, req)
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

func TestUnknownEndpoint(t *testing.T) {
	e := newEnv(t, true)
	for _, ep := range []struct{ method, path string }{
		{"GET", "/admin/v1/nothing"},
		{"GET", "/"},
		{"PUT", "/admin/v1/clients"},
		{"GET", "/admin/v1/keys/rotate"},
	} {
		code, body := e.doString(t, ep.method, ep.path, "")
		if code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d %s, want 404 or 405", ep.method, ep.path, code, body)
		}
	}
}

// TestEndpoints drives every endpoint through admin.Client.
func TestEndpoints(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	c := e.client

	name, plan := "team one", "gold"
	scopes, models, aud := []string{"models:infer", "models:read"}, []string{"resnet", "bert-base"}, []string{"https://api.example"}
	created, err := c.CreateClient(ctx, admin.ClientRequest{Name: &name, Plan: &plan, Scopes: &scopes, Models: &models, Audience: &aud})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.ClientID, "hxc_") || created.ClientSecret == "" {
		t.Fatalf("created %+v", created)
	}
	if created.Name != name || created.Plan != plan || !created.Enabled ||
		!slices.Equal(created.Scopes, scopes) || !slices.Equal(created.Models, models) || !slices.Equal(created.Audience, aud) {
		t.Errorf("created %+v", created)
	}
	stored, ok := e.store.client(created.ClientID)
	if !ok {
		t.Fatal("client not stored")
	}
	if !e.hasher.Verify(stored.SecretHash, created.ClientSecret) {
		t.Error("the secret does not verify against the stored hash with the configured hasher")
	}
	if secret.NewHasher(nil).Verify(stored.SecretHash, created.ClientSecret) {
		t.Error("the stored hash ignores the pepper")
	}
	if strings.Contains(string(stored.SecretHash), created.ClientSecret) {
		t.Error("the secret is stored in clear")
	}

	// Defaults: the gateway's default plan, no model, enabled.
	only := []string{"models:resnet:infer"}
	defaults, err := c.CreateClient(ctx, admin.ClientRequest{Scopes: &only})
	if err != nil {
		t.Fatal(err)
	}
	if defaults.Plan != "free" || defaults.Models == nil || len(defaults.Models) != 0 || !defaults.Enabled ||
		defaults.Audience == nil || defaults.ClientSecret == "" || defaults.ClientSecret == created.ClientSecret {
		t.Errorf("defaults %+v", defaults)
	}
	disabled := false
	off, err := c.CreateClient(ctx, admin.ClientRequest{Scopes: &only, Enabled: &disabled})
	if err != nil || off.Enabled {
		t.Fatalf("create disabled: %+v %v", off, err)
	}

	list, err := c.ListClients(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %d clients, %v", len(list), err)
	}
	for _, v := range list {
		if v.ClientSecret != "" {
			t.Errorf("list shows the secret of %s", v.ClientID)
		}
	}
	got, err := c.GetClient(ctx, created.ClientID)
	if err != nil || got.ClientID != created.ClientID || got.Name != name || got.ClientSecret != "" {
		t.Fatalf("get: %+v %v", got, err)
	}

	newPlan, enabled := "silver", false
	updated, err := c.UpdateClient(ctx, created.ClientID, admin.ClientRequest{Plan: &newPlan, Enabled: &enabled})
	if err != nil {
		t.Fatal(err)
	}
	if updated.Plan != newPlan || updated.Enabled || updated.Name != name || !slices.Equal(updated.Scopes, scopes) || updated.ClientSecret != "" {
		t.Errorf("updated %+v", updated)
	}
	if s, _ := e.store.client(created.ClientID); !e.hasher.Verify(s.SecretHash, created.ClientSecret) {
		t.Error("update changed the secret")
	}

	rotated, err := c.RotateSecret(ctx, created.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ClientSecret == "" || rotated.ClientSecret == created.ClientSecret || rotated.ClientID != created.ClientID {
		t.Fatalf("rotated %+v", rotated)
	}
	s, _ := e.store.client(created.ClientID)
	if !e.hasher.Verify(s.SecretHash, rotated.ClientSecret) || e.hasher.Verify(s.SecretHash, created.ClientSecret) {
		t.Error("after rotation the new secret must verify and the old one must not")
	}

	keyScopes := []string{"models:resnet:infer"}
	key, err := c.CreateAPIKey(ctx, admin.APIKeyRequest{ClientID: created.ClientID, Name: "ci", Scopes: keyScopes, ExpiresIn: "720h"})
	if err != nil {
		t.Fatal(err)
	}
	prefix, ok := secret.ParseAPIKey(key.Key)
	if !ok || prefix != key.Prefix || key.ID == "" || key.ClientID != created.ClientID || key.Name != "ci" || !slices.Equal(key.Scopes, keyScopes) {
		t.Fatalf("API key %+v", key)
	}
	if key.ExpiresAt == nil || !key.ExpiresAt.Equal(e.now.Add(720*time.Hour)) {
		t.Errorf("expires_at %v, want %v", key.ExpiresAt, e.now.Add(720*time.Hour))
	}
	sk, ok := e.store.key(key.ID)
	if !ok || !e.hasher.Verify(sk.Hash, key.Key) || sk.Prefix != prefix {
		t.Fatalf("stored key %+v does not verify", sk)
	}
	// No scopes: the client's.
	key2, err := c.CreateAPIKey(ctx, admin.APIKeyRequest{ClientID: defaults.ClientID})
	if err != nil || !slices.Equal(key2.Scopes, only) || key2.ExpiresAt != nil || key2.Key == "" || key2.Key == key.Key {
		t.Fatalf("API key with default scopes: %+v %v", key2, err)
	}

	keys, err := c.ListAPIKeys(ctx, "")
	if err != nil || len(keys) != 2 {
		t.Fatalf("list keys: %+v %v", keys, err)
	}
	keys, err = c.ListAPIKeys(ctx, created.ClientID)
	if err != nil || len(keys) != 1 || keys[0].ID != key.ID || keys[0].Key != "" {
		t.Fatalf("list keys of one client: %+v %v", keys, err)
	}

	if err := c.RevokeAPIKey(ctx, key.Prefix); err != nil {
		t.Fatal(err)
	}
	if sk, _ := e.store.key(key.ID); sk.RevokedAt == nil {
		t.Error("key not revoked")
	}
	keys, _ = c.ListAPIKeys(ctx, created.ClientID)
	if len(keys) != 1 || keys[0].RevokedAt == nil {
		t.Errorf("list after revoke: %+v", keys)
	}
	err = c.RevokeAPIKey(ctx, "no-such-key")
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusNotFound {
		t.Errorf("revoke unknown: %v", err)
	}

	kid, err := c.RotateKeys(ctx)
	if err != nil || kid != "kid-1" {
		t.Fatalf("rotate keys: %q %v", kid, err)
	}

	if err := c.DeleteClient(ctx, created.ClientID); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetClient(ctx, created.ClientID)
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusNotFound {
		t.Errorf("get after delete: %v", err)
	}
	err = c.DeleteClient(ctx, created.ClientID)
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusNotFound {
		t.Errorf("delete twice: %v", err)
	}

	// Secrets are in no log line.
	logs := e.logs.String()
	for _, sec := range []string{created.ClientSecret, rotated.ClientSecret, defaults.ClientSecret, key.Key, key2.Key} {
		if strings.Contains(logs, sec) {
			t.Errorf("a secret is in the log: %s", logs)
		}
	}
}

// TestSecretsOnlyInCreatingResponses reads the raw JSON of every read-only
// answer: neither secrets nor hashes nor their field names appear.
func TestSecretsOnlyInCreatingResponses(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	scopes := []string{"models:infer"}
	cv, err := e.client.CreateClient(ctx, admin.ClientRequest{Scopes: &scopes})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := e.client.CreateAPIKey(ctx, admin.APIKeyRequest{ClientID: cv.ClientID})
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := e.store.client(cv.ClientID)
	sk, _ := e.store.key(kv.ID)
	forbidden := []string{
		cv.ClientSecret, kv.Key, `"client_secret"`, `"key"`, `"hash"`, `"secret_hash"`,
		base64.StdEncoding.EncodeToString(sc.SecretHash), hex.EncodeToString(sc.SecretHash),
		base64.StdEncoding.EncodeToString(sk.Hash), hex.EncodeToString(sk.Hash),
	}
	for _, path := range []string{
		"/admin/v1/clients", "/admin/v1/clients/" + cv.ClientID,
		"/admin/v1/apikeys", "/admin/v1/apikeys?client_id=" + cv.ClientID,
	} {
		code, body := e.doString(t, "GET", path, "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		for _, f := range forbidden {
			if strings.Contains(body, f) {
				t.Errorf("GET %s shows %q: %s", path, f, body)
			}
		}
	}
	// Updates show no secret either.
	code, body := e.doString(t, "PATCH", "/admin/v1/clients/"+cv.ClientID, `{"plan":"gold"}`)
	if code != http.StatusOK || strings.Contains(body, "client_secret") || strings.Contains(body, cv.ClientSecret) {
		t.Errorf("PATCH: %d %s", code, body)
	}
}

func TestRotateKeysWithoutRotator(t *testing.T) {
	e := newEnv(t, false)
	_, err := e.client.RotateKeys(context.Background())
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusNotImplemented {
		t.Errorf("got %v, want 501", err)
	}
}

func TestClientValidation(t *testing.T) {
	e := newEnv(t, true)
	const existing = "hxc_existing"
	if err := e.store.CreateClient(context.Background(), &store.Client{
		ID: existing, SecretHash: []byte{1}, Scopes: []string{"models:infer"}, Models: []string{"*"}, Plan: "default", Enabled: true,
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := e.store.client(existing)

	withScopes := func(extra string) string { return `{"scopes":["models:infer"]` + extra + `}` }
	tests := []struct {
		name, body string
		want       int
		mention    string // a word the error must contain
	}{
		{"scope models:", `{"scopes":["models:"]}`, 400, "scope"},
		{"scope with a path", `{"scopes":["models:../x:infer"]}`, 400, "scope"},
		{"scope admin", `{"scopes":["admin"]}`, 400, "scope"},
		{"scope with SQL", `{"scopes":["models:x';DROP TABLE clients;--:infer"]}`, 400, "scope"},
		{"scope models:x:read", `{"scopes":["models:x:read"]}`, 400, "scope"},
		{"scope with a space", `{"scopes":["models:infer "]}`, 400, "scope"},
		{"scope with a NUL", `{"scopes":["models:x\u0000:infer"]}`, 400, "scope"},
		{"empty scope", `{"scopes":[""]}`, 400, "scope"},
		{"no scopes", `{"enabled":true}`, 400, "scope"},
		{"empty scopes", `{"scopes":[]}`, 400, "scope"},
		{"too many scopes", `{"scopes":[` + strings.TrimSuffix(strings.Repeat(`"models:infer",`, 257), ",") + `]}`, 400, "scope"},
		{"model with a path", withScopes(`,"models":["../etc"]`), 400, "model"},
		{"model with a space", withScopes(`,"models":["a b"]`), 400, "model"},
		{"empty model", withScopes(`,"models":[""]`), 400, "model"},
		{"model with SQL", withScopes(`,"models":["x';DROP TABLE clients;--"]`), 400, "model"},
		{"model name too long", withScopes(`,"models":["` + strings.Repeat("m", wire.MaxModelNameBytes+1) + `"]`), 400, "model"},
		{"model starting with a dot", withScopes(`,"models":[".hidden"]`), 400, "model"},
		{"plan in upper case", withScopes(`,"plan":"Gold"`), 400, "plan"},
		{"plan the gateway lacks", withScopes(`,"plan":"platinum"`), 400, "plan"},
		{"plan named default", withScopes(`,"plan":"default"`), 400, "plan"},
		{"plan with a space", withScopes(`,"plan":"gold plan"`), 400, "plan"},
		{"empty plan", withScopes(`,"plan":""`), 400, "plan"},
		{"plan with SQL", withScopes(`,"plan":"x';--"`), 400, "plan"},
		{"name with NUL", withScopes(`,"name":"a\u0000b"`), 400, "name"},
		{"name with newline", withScopes(`,"name":"a\nb"`), 400, "name"},
		{"name with ESC", withScopes(`,"name":"\u001b[31mred"`), 400, "name"},
		{"name with DEL", withScopes(`,"name":"a\u007f"`), 400, "name"},
		{"name with C1 CSI", withScopes(`,"name":"a\u009b31m"`), 400, "name"},
		{"name with a bidi override", withScopes(`,"name":"abc\u202edcb"`), 400, "name"},
		{"name too long", withScopes(`,"name":"` + strings.Repeat("n", 201) + `"`), 400, "name"},
		{"empty audience", withScopes(`,"audience":[""]`), 400, "audience"},
		{"audience with a space", withScopes(`,"audience":["a b"]`), 400, "audience"},
		{"unknown field", withScopes(`,"client_secret":"mine"`), 400, "unknown field"},
		{"unknown field id", withScopes(`,"client_id":"hxc_mine"`), 400, "unknown field"},
		{"wrong type", `{"scopes":"models:infer"}`, 400, "JSON"},
		{"malformed", `{"scopes":`, 400, "JSON"},
		{"not an object", `[]`, 400, "JSON"},
		{"two values", withScopes(``) + ` {}`, 400, "JSON"},
		{"two values, no space", withScopes(``) + `{}`, 400, "JSON"},
		{"trailing bracket", withScopes(``) + `]`, 400, "JSON"},
		{"trailing brace", withScopes(``) + `}`, 400, "JSON"},
		{"trailing garbage", withScopes(``) + `x`, 400, "JSON"},
		{"empty body", ``, 400, "empty"},
		{"white space only", " \n\t", 400, "empty"},
		{"oversized", withScopes(`,"name":"` + strings.Repeat("n", 70<<10) + `"`), 413, "bytes"},
		{"oversized white space after the value", withScopes(``) + strings.Repeat(" ", 70<<10), 413, "bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, ep := range []struct{ method, path string }{
				{"POST", "/admin/v1/clients"},
				{"PATCH", "/admin/v1/clients/" + existing},
			} {
				writes := e.store.writes()
				code, body := e.doString(t, ep.method, ep.path, tt.body)
				if ep.method == "PATCH" && (tt.name == "no scopes") {
					// A PATCH needs no scopes: it keeps the client's.
					if code != http.StatusOK {
						t.Errorf("%s: %d %s", ep.method, code, body)
					}
					continue
				}
				if code != tt.want {
					t.Fatalf("%s: status %d, want %d; body %s", ep.method, code, tt.want, body)
				}
				msg := assertJSONError(t, body)
				if !strings.Contains(strings.ToLower(msg), strings.ToLower(tt.mention)) {
					t.Errorf("%s: error %q does not mention %q", ep.method, msg, tt.mention)
				}
				if e.store.writes() != writes {
					t.Errorf("%s: a refused request wrote to the store", ep.method)
				}
			}
		})
	}
	after, _ := e.store.client(existing)
	after.UpdatedAt = before.UpdatedAt
	if after.Name != before.Name || !slices.Equal(after.Scopes, before.Scopes) || after.Plan != before.Plan {
		t.Errorf("refused updates changed the client: %+v -> %+v", before, after)
	}

	// What is allowed.
	for _, body := range []string{
		`{"scopes":["models:infer","models:read","models:resnet-50_v1.2:infer"]}`,
		withScopes(`,"models":["*","resnet","a.b-c_d"],"plan":"gold_2-x","name":"Équipe 東京 🚀","audience":["https://x.example/a?b=c"]`),
		withScopes(`,"name":"` + strings.Repeat("é", 200) + `"`),
		withScopes(`,"enabled":false,"models":[]`),
		"\n " + withScopes(``) + " \n",
	} {
		if code, resp := e.doString(t, "POST", "/admin/v1/clients", body); code != http.StatusCreated {
			t.Errorf("POST %s: %d %s", body, code, resp)
		}
	}
}

// The gateway config is the plans' one home: the admin API gives clients
// only its plans, follows it when it changes (Plans.Set), and gives a new
// client its default plan and no model.
func TestPlans(t *testing.T) {
	e := newEnv(t, true)
	ctx := t.Context()
	scopes := []string{"models:infer"}
	create := func(plan string) (*admin.ClientView, error) {
		req := admin.ClientRequest{Scopes: &scopes}
		if plan != "" {
			req.Plan = &plan
		}
		return e.client.CreateClient(ctx, req)
	}
	refused := func(err error, want string) {
		t.Helper()
		if apiErr := asAPIError(t, err); apiErr.Status != http.StatusBadRequest || !strings.Contains(apiErr.Message, want) {
			t.Errorf("got %v, want 400 saying %q", err, want)
		}
	}

	_, err := create("platinum")
	refused(err, `plan: "platinum" is not a plan of the gateway (plans: free, gold, gold_2-x, silver)`)
	c, err := create("")
	if err != nil || c.Plan != "free" || len(c.Models) != 0 {
		t.Fatalf("create with defaults: %+v %v, want plan free and no model", c, err)
	}
	platinum := "platinum"
	_, err = e.client.UpdateClient(ctx, c.ClientID, admin.ClientRequest{Plan: &platinum})
	refused(err, `plan: "platinum" is not a plan of the gateway`)
	if got, _ := e.store.client(c.ClientID); got.Plan != "free" {
		t.Errorf("a refused update changed the plan to %q", got.Plan)
	}

	// The gateway config changed: platinum is new and the default, gold is gone.
	e.plans.Set([]string{"platinum", "free"}, "platinum")
	if c, err := create(""); err != nil || c.Plan != "platinum" {
		t.Errorf("create after the reload: %+v %v, want the new default plan", c, err)
	}
	if _, err := e.client.UpdateClient(ctx, c.ClientID, admin.ClientRequest{Plan: &platinum}); err != nil {
		t.Errorf("update to a plan the reload added: %v", err)
	}
	_, err = create("gold")
	refused(err, `plan: "gold" is not a plan of the gateway (plans: free, platinum)`)

	// Rate limits off and no plans: a new client has no plan, and none
	// can be given.
	e.plans.Set(nil, "")
	if c, err := create(""); err != nil || c.Plan != "" {
		t.Errorf("create without rate limits: %+v %v, want no plan", c, err)
	}
	_, err = create("free")
	refused(err, `plan: "free" is not a plan of the gateway (it has none)`)
}

func TestAPIKeyValidation(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	mk := func(scopes ...string) string {
		v, err := e.client.CreateClient(ctx, admin.ClientRequest{Scopes: &scopes})
		if err != nil {
			t.Fatal(err)
		}
		return v.ClientID
	}
	all, one := mk("models:infer"), mk("models:resnet:infer", "models:read")
	tests := []struct {
		name, body string
		want       int
	}{
		{"model scope under models:infer", `{"client_id":"` + all + `","scopes":["models:x:infer"]}`, 201},
		{"models:infer under models:infer", `{"client_id":"` + all + `","scopes":["models:infer"]}`, 201},
		{"models:read beyond models:infer", `{"client_id":"` + all + `","scopes":["models:read"]}`, 400},
		{"same model scope", `{"client_id":"` + one + `","scopes":["models:resnet:infer"]}`, 201},
		{"read scope of the client", `{"client_id":"` + one + `","scopes":["models:read"]}`, 201},
		{"other model", `{"client_id":"` + one + `","scopes":["models:bert:infer"]}`, 400},
		{"models:infer beyond one model", `{"client_id":"` + one + `","scopes":["models:infer"]}`, 400},
		{"bad scope", `{"client_id":"` + all + `","scopes":["admin"]}`, 400},
		{"SQL in scope", `{"client_id":"` + all + `","scopes":["models:x';DROP TABLE clients;--:infer"]}`, 400},
		{"empty scopes", `{"client_id":"` + all + `","scopes":[]}`, 400},
		{"expires_in not a duration", `{"client_id":"` + all + `","expires_in":"a month"}`, 400},
		{"expires_in without unit", `{"client_id":"` + all + `","expires_in":"720"}`, 400},
		{"expires_in negative", `{"client_id":"` + all + `","expires_in":"-1h"}`, 400},
		{"expires_in zero", `{"client_id":"` + all + `","expires_in":"0s"}`, 400},
		{"expires_in over 10 years", `{"client_id":"` + all + `","expires_in":"87601h"}`, 400},
		{"expires_in overflowing", `{"client_id":"` + all + `","expires_in":"99999999999h"}`, 400},
		{"expires_in 10 years", `{"client_id":"` + all + `","expires_in":"87600h"}`, 201},
		{"expires_in 1s", `{"client_id":"` + all + `","expires_in":"1s"}`, 201},
		{"name with control", `{"client_id":"` + all + `","name":"a\tb"}`, 400},
		{"no client", `{"scopes":["models:infer"]}`, 400},
		{"unknown client", `{"client_id":"hxc_nobody"}`, 404},
		{"unknown field", `{"client_id":"` + all + `","key":"mine"}`, 400},
		{"empty body", ``, 400},
		{"two values", `{"client_id":"` + all + `"}{}`, 400},
		{"oversized", `{"client_id":"` + all + `","name":"` + strings.Repeat("n", 65<<10) + `"}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.store.count("CreateAPIKey")
			code, body := e.doString(t, "POST", "/admin/v1/apikeys", tt.body)
			if code != tt.want {
				t.Fatalf("status %d, want %d; body %s", code, tt.want, body)
			}
			if code >= 400 {
				assertJSONError(t, body)
				if e.store.count("CreateAPIKey") != before {
					t.Error("a refused key reached the store")
				}
			}
		})
	}
}

// TestStoreErrors: each store failure is answered with its status, and
// the text of unexpected errors stays in the log.
func TestStoreErrors(t *testing.T) {
	const leak = "pq: connection to 10.1.2.3 password=hunter2"
	errs := []struct {
		name string
		err  error
		want int
	}{
		{"not found", fmt.Errorf("x: %w", store.ErrNotFound), 404},
		{"conflict", fmt.Errorf("x: %w", store.ErrConflict), 409},
		{"invalid", fmt.Errorf("store: client id is empty: %w", store.ErrInvalid), 400},
		{"unavailable", fmt.Errorf("%s: %w", leak, store.ErrUnavailable), 503},
		{"other", errors.New(leak), 500},
	}
	endpoints := []struct {
		method, path, body, fails string
	}{
		{"POST", "/admin/v1/clients", `{"scopes":["models:infer"]}`, "CreateClient"},
		{"GET", "/admin/v1/clients", ``, "ListClients"},
		{"GET", "/admin/v1/clients/hxc_a", ``, "GetClient"},
		{"PATCH", "/admin/v1/clients/hxc_a", `{"plan":"gold"}`, "GetClient"},
		{"PATCH", "/admin/v1/clients/hxc_a", `{"plan":"gold"}`, "UpdateClient"},
		{"DELETE", "/admin/v1/clients/hxc_a", ``, "DeleteClient"},
		{"POST", "/admin/v1/clients/hxc_a/rotate-secret", ``, "SetClientSecret"},
		{"POST", "/admin/v1/apikeys", `{"client_id":"hxc_a"}`, "GetClient"},
		{"POST", "/admin/v1/apikeys", `{"client_id":"hxc_a"}`, "CreateAPIKey"},
		{"GET", "/admin/v1/apikeys", ``, "ListAPIKeys"},
		{"DELETE", "/admin/v1/apikeys/abc", ``, "RevokeAPIKey"},
		{"POST", "/admin/v1/keys/rotate", ``, "Rotate"},
	}
	for _, ep := range endpoints {
		for _, se := range errs {
			t.Run(ep.method+" "+ep.path+" "+ep.fails+" "+se.name, func(t *testing.T) {
				e := newEnv(t, true)
				if err := e.store.CreateClient(context.Background(), &store.Client{
					ID: "hxc_a", SecretHash: []byte{1}, Scopes: []string{"models:infer"}, Plan: "default", Enabled: true,
				}); err != nil {
					t.Fatal(err)
				}
				if ep.fails == "Rotate" {
					e.rotator.err = se.err
				} else {
					e.store.setFail(ep.fails, se.err)
				}
				code, body := e.doString(t, ep.method, ep.path, ep.body)
				if code != se.want {
					t.Fatalf("status %d, want %d; body %s", code, se.want, body)
				}
				msg := assertJSONError(t, body)
				if strings.Contains(msg, "hunter2") || strings.Contains(msg, "10.1.2.3") {
					t.Errorf("the error text leaked: %q", msg)
				}
				if se.want >= 500 && !strings.Contains(e.logs.String(), "hunter2") {
					t.Errorf("the error was not logged: %s", e.logs)
				}
				if strings.Contains(body, "client_secret") {
					t.Errorf("a failed request shows a secret: %s", body)
				}
			})
		}
	}
}

// TestSecretSurvivesFailedReadBack: once a secret is stored, the answer
// carries it even if reading the client back fails; otherwise the caller
// would hold a client (or a rotated secret) nobody knows.
func TestSecretSurvivesFailedReadBack(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	scopes := []string{"models:infer"}
	e.store.setFail("GetClient", fmt.Errorf("x: %w", store.ErrUnavailable))
	cv, err := e.client.CreateClient(ctx, admin.ClientRequest{Scopes: &scopes})
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := e.store.client(cv.ClientID)
	if !ok || cv.ClientSecret == "" || !e.hasher.Verify(sc.SecretHash, cv.ClientSecret) || !slices.Equal(cv.Scopes, scopes) {
		t.Fatalf("created %+v", cv)
	}
	rv, err := e.client.RotateSecret(ctx, cv.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ = e.store.client(cv.ClientID)
	if rv.ClientID != cv.ClientID || !e.hasher.Verify(sc.SecretHash, rv.ClientSecret) {
		t.Fatalf("rotated %+v", rv)
	}
	// Rotating an unknown client fails before anything is made.
	e.store.setFail("GetClient", nil)
	_, err = e.client.RotateSecret(ctx, "hxc_nobody")
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusNotFound {
		t.Errorf("rotate unknown: %v", err)
	}
}

func TestClientErrors(t *testing.T) {
	for _, tt := range []struct{ url, token string }{
		{"", testToken},
		{"ftp://x", testToken},
		{"http://", testToken},
		{"127.0.0.1:8091", testToken},
		{"http://127.0.0.1:8091", ""},
	} {
		if _, err := admin.NewClient(tt.url, tt.token, nil); err == nil {
			t.Errorf("NewClient(%q, %q) accepted", tt.url, tt.token)
		}
	}
	if _, err := admin.NewClient("http://127.0.0.1:8091", "", nil); err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Errorf("missing token: %v", err)
	}

	// An error answer that is not JSON still gives an APIError.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	c, err := admin.NewClient(srv.URL+"/", testToken, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListClients(context.Background())
	if apiErr := asAPIError(t, err); apiErr.Status != http.StatusBadGateway || apiErr.Message != "Bad Gateway" {
		t.Errorf("got %+v", apiErr)
	}

	// A success answer that is not JSON is an error, not an empty result.
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<html>"))
	}))
	t.Cleanup(srv2.Close)
	c2, err := admin.NewClient(srv2.URL, testToken, srv2.Client())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.ListClients(context.Background()); err == nil {
		t.Error("a non-JSON answer was accepted")
	}
}

func assertJSONError(t testing.TB, body string) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error", body)
	}
	return e.Error
}

func asAPIError(t testing.TB, err error) *admin.APIError {
	t.Helper()
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v is not an APIError", err)
	}
	return apiErr
}
