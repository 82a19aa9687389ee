package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/wire"
)

var fuzzSeeds = []string{
	`{"scopes":["models:infer"]}`,
	`{"scopes":["models:resnet:infer","models:read"],"models":["resnet"],"plan":"gold","name":"n","audience":["a"],"enabled":false}`,
	`{"scopes":["models:x';DROP TABLE clients;--:infer"]}`,
	`{"scopes":["models:../x:infer"]}`,
	`{"scopes":["models:infer"],"name":"a\u009bb"}`,
	`{"scopes":["models:infer"]}]`,
	`{"scopes":["models:infer"]} {}`,
	`{"client_id":"hxc_fuzz","scopes":["models:x:infer"],"expires_in":"1h"}`,
	`{"client_id":"hxc_fuzz","expires_in":"-9223372036854775808ns"}`,
	`{"scopes":null,"name":null}`,
	`{"scopes":["models:infer"],"scopes":["admin"]}`,
	`{"SCOPES":["models:infer"]}`,
	"\xef\xbb\xbf{}",
	`{"name":"\ud800"}`,
	`[`, ``, `null`, `0`, `"x"`,
}

// checkAnswer: never 5xx (the fake store never fails here), always a JSON
// body, and a created client or key holds only valid values.
func checkAnswer(t *testing.T, e *env, code int, body string) {
	t.Helper()
	if code >= 500 {
		t.Fatalf("status %d: %s", code, body)
	}
	if !json.Valid([]byte(body)) {
		t.Fatalf("status %d, body is not JSON: %q", code, body)
	}
	if code >= 300 {
		assertJSONError(t, body)
		return
	}
	var v struct {
		ClientID string   `json:"client_id"`
		ID       string   `json:"id"`
		Key      string   `json:"key"`
		Scopes   []string `json:"scopes"`
		Plan     string   `json:"plan"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Scopes) == 0 {
		t.Fatalf("created without scopes: %s", body)
	}
	for _, s := range v.Scopes {
		if !grantableScope(s) {
			t.Fatalf("created with scope %q", s)
		}
	}
	if v.ID != "" {
		k, ok := e.store.key(v.ID)
		if !ok || !e.hasher.Verify(k.Hash, v.Key) {
			t.Fatalf("created key %s does not verify", v.ID)
		}
	}
}

// grantableScope is the fuzz oracle for a stored scope: one of the fixed
// scopes, or models:<name>:infer whose name is a model name (internal/wire:
// quotes and semicolons are legal, separators, spaces and ".." are not) and
// that travels in an RFC 6749 scope list (no space, '"' or '\').
func grantableScope(s string) bool {
	switch s {
	case "models:infer", "models:read", "helix:introspect":
		return true
	}
	name, ok := strings.CutPrefix(s, "models:")
	if !ok {
		return false
	}
	name, ok = strings.CutSuffix(name, ":infer")
	return ok && wire.CheckModelName(name) == nil && !strings.ContainsAny(s, " \"\\\x00")
}

// storeFailures are the errors FuzzCreateClient makes the store return;
// the status each must give, where the request gets that far.
var storeFailures = []struct {
	err  error
	want int
}{
	{nil, http.StatusCreated},
	{fmt.Errorf("x: %w", store.ErrNotFound), http.StatusNotFound},
	{fmt.Errorf("x: %w", store.ErrConflict), http.StatusConflict},
	{fmt.Errorf("x: %w", store.ErrInvalid), http.StatusBadRequest},
	{fmt.Errorf("x: %w", store.ErrUnavailable), http.StatusServiceUnavailable},
	{errors.New("boom"), http.StatusInternalServerError},
}

func FuzzCreateClient(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(i))
	}
	e := newEnv(f, true)
	f.Fuzz(func(t *testing.T, body []byte, fail uint8) {
		sf := storeFailures[int(fail)%len(storeFailures)]
		e.store.setFail("CreateClient", sf.err)
		writes := e.store.count("CreateClient")
		code, resp := e.do(t, "POST", "/admin/v1/clients", bytes.NewReader(body))
		reached := e.store.count("CreateClient") > writes
		if reached && code != sf.want {
			t.Fatalf("store error %v: status %d, want %d", sf.err, code, sf.want)
		}
		if !reached && code < 300 {
			t.Fatalf("status %d without a store call", code)
		}
		if sf.err != nil && code >= 500 {
			if !json.Valid([]byte(resp)) || strings.Contains(resp, "boom") {
				t.Fatalf("status %d, body %q", code, resp)
			}
			return
		}
		checkAnswer(t, e, code, resp)
		if code == http.StatusCreated {
			var v struct {
				ClientID     string `json:"client_id"`
				ClientSecret string `json:"client_secret"`
			}
			if err := json.Unmarshal([]byte(resp), &v); err != nil {
				t.Fatal(err)
			}
			c, ok := e.store.client(v.ClientID)
			if !ok || !e.hasher.Verify(c.SecretHash, v.ClientSecret) {
				t.Fatalf("created client %s does not verify", v.ClientID)
			}
		}
	})
}

func FuzzUpdateClient(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	e := newEnv(f, true)
	if err := e.store.CreateClient(context.Background(), &store.Client{
		ID: "hxc_fuzz", SecretHash: []byte{1}, Scopes: []string{"models:infer"}, Models: []string{"*"}, Plan: "default", Enabled: true,
	}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		code, resp := e.do(t, "PATCH", "/admin/v1/clients/hxc_fuzz", bytes.NewReader(body))
		checkAnswer(t, e, code, resp)
		if code == http.StatusOK && strings.Contains(resp, "client_secret") {
			t.Fatalf("an update shows a secret: %s", resp)
		}
	})
}

func FuzzCreateAPIKey(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	e := newEnv(f, true)
	if err := e.store.CreateClient(context.Background(), &store.Client{
		ID: "hxc_fuzz", SecretHash: []byte{1}, Scopes: []string{"models:infer"}, Models: []string{"*"}, Plan: "default", Enabled: true,
	}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		code, resp := e.do(t, "POST", "/admin/v1/apikeys", bytes.NewReader(body))
		checkAnswer(t, e, code, resp)
		if code == http.StatusCreated {
			var v struct{ Scopes []string }
			_ = json.Unmarshal([]byte(resp), &v)
			for _, s := range v.Scopes {
				if s == "models:read" {
					t.Fatalf("key got a scope its client lacks: %s", resp)
				}
			}
		}
	})
}
