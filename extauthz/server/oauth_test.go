package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/extauthz/oauth"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// introspect asks the replica about tok as client by and returns the
// answer, or {"status": code} when it is not 200.
func (r *replica) introspect(t *testing.T, by clientCreds, tok string) map[string]any {
	t.Helper()
	form := url.Values{"token": {tok}}
	req, _ := http.NewRequest(http.MethodPost, r.oauth.URL+oauth.PathIntrospect, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(by.ClientID, by.ClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return map[string]any{"status": resp.StatusCode}
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body
}

func (r *replica) createClient(t *testing.T, name string, scopes ...string) clientCreds {
	t.Helper()
	var c clientCreds
	if st := r.adminCall(t, "POST", "/admin/v1/clients", map[string]any{
		"name": name, "scopes": scopes, "models": []string{"simple"}, "plan": "gold",
	}, &c); st != http.StatusCreated {
		t.Fatalf("create client %s: %d", name, st)
	}
	// Clients are served from memory: the new one is there once its
	// notification arrived.
	waitFor(t, func() bool { _, st := r.token(t, c, ""); return st == http.StatusOK })
	return c
}

// RFC 7662 section 4 on the assembled server and Postgres: a client hears
// about its own tokens; another client's token is {"active": false} unless
// the caller holds the introspection scope.
func TestIntrospectionRestricted(t *testing.T) {
	r := startReplica(t, pgtest.Start(t))
	a := r.createClient(t, "a", "models:read")
	b := r.createClient(t, "b", "models:read")
	auditor := r.createClient(t, "auditor", oauth.ScopeIntrospect)
	tok, st := r.token(t, a, "")
	if st != http.StatusOK {
		t.Fatalf("token: %d", st)
	}
	for _, tt := range []struct {
		by     clientCreds
		active bool
	}{{a, true}, {b, false}, {auditor, true}} {
		got := r.introspect(t, tt.by, tok)
		if got["active"] != tt.active {
			t.Fatalf("introspection by %s: %v, want active=%v", tt.by.ClientID, got, tt.active)
		}
		if tt.active && got["client_id"] != a.ClientID {
			t.Fatalf("introspection by %s: %v", tt.by.ClientID, got)
		}
		if !tt.active && len(got) != 1 {
			t.Fatalf("inactive answer says more: %v", got)
		}
	}
	// Disabling a ends its tokens for introspection too.
	if st := r.adminCall(t, "PATCH", "/admin/v1/clients/"+a.ClientID, map[string]any{"enabled": false}, nil); st != http.StatusOK {
		t.Fatalf("disable: %d", st)
	}
	if got := r.introspect(t, auditor, tok); got["active"] != false {
		t.Fatalf("token of a disabled client: %v", got)
	}
}

// oauthOnly is an assembled helix-authz without the admin API, background
// work running, whose metrics land in reg; only its OAuth2 handler is
// served. Its one client, made in the store, is returned with it.
func oauthOnly(t *testing.T, dsn string, reg prometheus.Registerer) (*replica, clientCreds) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, Config{
		DatabaseURL: dsn, Migrate: true, KEK: bytes.Repeat([]byte{9}, 32),
		GatewayConfig: writeGatewayConfig(t, noLimitsGatewayConfig),
		Issuer:        "http://127.0.0.1", Audience: "helixflow", TokenLifetime: 5 * time.Minute,
		Logger: slog.New(slog.DiscardHandler), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Run(ctx)
	r := &replica{srv: srv, oauth: httptest.NewServer(srv.OAuth)}
	t.Cleanup(func() {
		r.oauth.Close()
		cancel()
		srv.Close()
	})
	waitFor(t, func() bool { _, _, _, err := srv.Keys.SigningKey(ctx); return err == nil })
	c := clientCreds{ClientID: "hxc_real"}
	if c.ClientSecret, err = secret.NewClientSecret(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Store.CreateClient(ctx, &store.Client{
		ID: c.ClientID, SecretHash: secret.NewHasher(nil).Hash(c.ClientSecret), Scopes: []string{"models:read"},
		Models: []string{"simple"}, Plan: "free", Enabled: true,
	}); err != nil {
		t.Fatal(err)
	}
	// The notification brings it into the directory.
	waitFor(t, func() bool { _, st := r.token(t, c, ""); return st == http.StatusOK })
	return r, c
}

// The token, introspection and revocation endpoints find clients in
// memory: a flood of unknown or random client ids (and wrong secrets)
// makes no database query.
func TestUnknownClientsCostNoQuery(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, c := oauthOnly(t, pgtest.Start(t), reg)
	tok, st := r.token(t, c, "")
	if st != http.StatusOK {
		t.Fatalf("token: %d", st)
	}
	lookups := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n, found := 0.0, false
		for _, mf := range mfs {
			if mf.GetName() != "helix_authz_db_lookups_total" {
				continue
			}
			found = true
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "table" && l.GetValue() == "clients" {
						n += m.GetCounter().GetValue()
					}
				}
			}
		}
		if !found {
			t.Fatal("helix_authz_db_lookups_total is not exported")
		}
		return n
	}
	before := lookups()
	post := func(path string, form url.Values, id, secret string) int {
		req, _ := http.NewRequest(http.MethodPost, r.oauth.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 30 {
		id := fmt.Sprintf("hxc_random%d", i)
		for _, p := range []struct {
			path string
			form url.Values
		}{
			{oauth.PathToken, url.Values{"grant_type": {"client_credentials"}}},
			{oauth.PathIntrospect, url.Values{"token": {tok}}},
			{oauth.PathRevoke, url.Values{"token": {tok}}},
		} {
			if st := post(p.path, p.form, id, "secret"); st != http.StatusUnauthorized {
				t.Fatalf("%s with an unknown client: %d", p.path, st)
			}
			if st := post(p.path, p.form, c.ClientID, "wrong"); st != http.StatusUnauthorized {
				t.Fatalf("%s with a wrong secret: %d", p.path, st)
			}
		}
	}
	if n := lookups() - before; n != 0 {
		t.Fatalf("%v client lookups reached the database", n)
	}
}

// A token issued before its client's secret was rotated is inactive.
func TestIntrospectionAfterRotation(t *testing.T) {
	r := startReplica(t, pgtest.Start(t))
	c := r.createClient(t, "rotating", "models:read")
	old, st := r.token(t, c, "")
	if st != http.StatusOK {
		t.Fatalf("token: %d", st)
	}
	var rotated clientCreds
	if st := r.adminCall(t, "POST", "/admin/v1/clients/"+c.ClientID+"/rotate-secret", nil, &rotated); st != http.StatusOK {
		t.Fatalf("rotate-secret: %d", st)
	}
	rotated.ClientID = c.ClientID
	waitFor(t, func() bool { return r.introspect(t, rotated, old)["active"] == false })
	fresh, st := r.token(t, rotated, "")
	if st != http.StatusOK {
		t.Fatalf("token after rotation: %d", st)
	}
	if got := r.introspect(t, rotated, fresh); got["active"] != true {
		t.Fatalf("fresh token: %v", got)
	}
}
