package oauth

import (
	"net/http"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
)

// addClient adds an enabled client with the given scopes and returns its
// HTTP Basic credentials.
func (e *env) addClient(t testing.TB, id string, scopes ...string) []string {
	t.Helper()
	s, err := secret.NewClientSecret()
	if err != nil {
		t.Fatal(err)
	}
	e.clients.mu.Lock()
	defer e.clients.mu.Unlock()
	e.clients.clients[id] = &store.Client{ID: id, Scopes: scopes, Plan: "free", Enabled: true,
		SecretHash: secret.NewHasher([]byte(testPepper)).Hash(s)}
	e.secrets[id] = s
	return []string{id, s}
}

// RFC 7662 section 4: a client learns about its own tokens only, unless it
// holds ScopeIntrospect; about any other token it hears {"active": false},
// exactly what an unknown token gets, so that existence does not leak.
func TestIntrospectRestricted(t *testing.T) {
	e := newEnv(t)
	auditor := e.addClient(t, "auditor", ScopeIntrospect)
	alphaTok := e.issue(t, "alpha", nil).AccessToken
	betaTok := e.issue(t, "beta", nil).AccessToken
	tests := []struct {
		name   string
		by     []string
		tok    string
		active bool
	}{
		{"own token", e.basic("alpha"), alphaTok, true},
		{"another client's token", e.basic("beta"), alphaTok, false},
		{"the other way round", e.basic("alpha"), betaTok, false},
		{"beta's own", e.basic("beta"), betaTok, true},
		{"introspection scope", auditor, alphaTok, true},
		{"introspection scope, other client", auditor, betaTok, true},
		{"garbage, with the scope", auditor, "garbage", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got := e.introspect(t, tt.by, tt.tok)
			if code != http.StatusOK || got["active"] != tt.active {
				t.Fatalf("%d %v, want active=%v", code, got, tt.active)
			}
			if !tt.active && len(got) != 1 {
				t.Fatalf("an inactive answer says more than active=false: %v", got)
			}
		})
	}
}

// A token whose client was disabled or deleted since is inactive, as
// ext_authz's Check treats it.
func TestIntrospectClientGone(t *testing.T) {
	e := newEnv(t)
	auditor := e.addClient(t, "auditor", ScopeIntrospect)
	tok := e.issue(t, "alpha", nil).AccessToken
	if _, got := e.introspect(t, auditor, tok); got["active"] != true {
		t.Fatalf("fresh token: %v", got)
	}
	e.clients.mu.Lock()
	e.clients.clients["alpha"].Enabled = false
	e.clients.mu.Unlock()
	if code, got := e.introspect(t, auditor, tok); code != http.StatusOK || got["active"] != false || len(got) != 1 {
		t.Fatalf("token of a disabled client: %d %v", code, got)
	}
	e.clients.mu.Lock()
	delete(e.clients.clients, "alpha")
	e.clients.mu.Unlock()
	if code, got := e.introspect(t, auditor, tok); code != http.StatusOK || got["active"] != false || len(got) != 1 {
		t.Fatalf("token of a deleted client: %d %v", code, got)
	}
}

// A token issued before its client's cutoff (moved by rotate-secret and by
// disabling) is inactive; one issued after it is active.
func TestIntrospectIssuedBeforeCutoff(t *testing.T) {
	e := newEnv(t)
	old := e.issue(t, "alpha", nil).AccessToken
	e.clock.add(time.Second)
	e.clients.mu.Lock()
	e.clients.clients["alpha"].TokensValidAfter = e.clock.now()
	e.clients.mu.Unlock()
	if code, got := e.introspect(t, e.basic("alpha"), old); code != http.StatusOK || got["active"] != false || len(got) != 1 {
		t.Fatalf("token issued before the cutoff: %d %v", code, got)
	}
	e.clock.add(time.Second)
	fresh := e.issue(t, "alpha", nil).AccessToken
	if _, got := e.introspect(t, e.basic("alpha"), fresh); got["active"] != true {
		t.Fatalf("token issued after the cutoff: %v", got)
	}
}
