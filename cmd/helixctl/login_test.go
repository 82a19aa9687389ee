package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/cliauth"
)

// fakeAuthz answers what whoami and logout ask helix-authz (the real
// flow is tested in internal/cliauth against the real OAuth server).
func fakeAuthz(t *testing.T) (*httptest.Server, *atomic.Int32, *atomic.Int32) {
	t.Helper()
	var refreshes, revokes atomic.Int32
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "authorization_endpoint": srv.URL + "/oauth2/authorize",
			"token_endpoint": srv.URL + "/oauth2/token", "revocation_endpoint": srv.URL + "/oauth2/revoke",
			"code_challenge_methods_supported": []string{"S256"}})
	})
	mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("grant_type") != "refresh_token" || r.FormValue("refresh_token") != "hxr_old" || r.FormValue("client_id") != cliauth.ClientID {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"The refresh token was already used."}`))
			return
		}
		refreshes.Add(1)
		_, _ = w.Write([]byte(`{"access_token":"new-access","refresh_token":"hxr_new","token_type":"bearer","expires_in":300,"scope":"account"}`))
	})
	mux.HandleFunc("POST /oauth2/revoke", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("token") == "hxr_new" && r.FormValue("client_id") == cliauth.ClientID {
			revokes.Add(1)
		}
	})
	mux.HandleFunc("GET /api/v1/account", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer new-access" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"id":"u-1","email":"ada@example.test","display_name":"Ada","platform_admin":true}`))
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &refreshes, &revokes
}

// whoami refreshes an expired access token (saving the rotated refresh
// token) and prints the account; logout revokes and deletes the file.
func TestWhoamiAndLogout(t *testing.T) {
	srv, refreshes, revokes := fakeAuthz(t)
	path := filepath.Join(t.TempDir(), "helixflow", "credentials.json")
	if err := cliauth.Save(path, &cliauth.Credentials{Issuer: srv.URL, ClientID: cliauth.ClientID, AccessToken: "old-access",
		RefreshToken: "hxr_old", ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"whoami", "--credentials", path, "--output", "json"}, &out); err != nil {
		t.Fatal(err)
	}
	var p person
	if err := json.Unmarshal([]byte(out.String()), &p); err != nil || p.Email != "ada@example.test" || !p.PlatformAdmin || p.Issuer != srv.URL {
		t.Fatalf("whoami: %v %s", err, out.String())
	}
	if c, err := cliauth.Load(path); err != nil || c.RefreshToken != "hxr_new" || refreshes.Load() != 1 {
		t.Fatalf("after refresh: %+v %v (%d refreshes)", c, err, refreshes.Load())
	}
	out.Reset()
	if err := run(context.Background(), []string{"whoami", "--credentials", path}, &out); err != nil || !strings.Contains(out.String(), "ada@example.test") || refreshes.Load() != 1 {
		t.Fatalf("whoami with a fresh token: %v %s (%d refreshes)", err, out.String(), refreshes.Load())
	}
	out.Reset()
	if err := run(context.Background(), []string{"logout", "--credentials", path}, &out); err != nil || revokes.Load() != 1 {
		t.Fatalf("logout: %v (%d revocations)", err, revokes.Load())
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("credentials left: %v", err)
	}
	if err := run(context.Background(), []string{"whoami", "--credentials", path}, &out); !errors.Is(err, cliauth.ErrNotLoggedIn) {
		t.Fatalf("whoami logged out: %v", err)
	}
}

func TestLoginUsage(t *testing.T) {
	t.Setenv("HELIX_ISSUER", "")
	for _, args := range [][]string{
		{"login", "--credentials", filepath.Join(t.TempDir(), "c.json")},
		{"login", "--issuer", "https://a.example", "extra"},
		{"whoami", "--output", "yaml"},
	} {
		if err := run(context.Background(), args, &strings.Builder{}); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v", args, err)
		}
	}
	if err := run(context.Background(), []string{"login", "--issuer", "http://authz.example"}, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("plain http off loopback: %v", err)
	}
}

// TestAdminAsSignedInPerson: without an admin token, admin commands carry
// the signed-in person's access token (the admin API takes a platform
// admin's), refreshed first when it is due.
func TestAdminAsSignedInPerson(t *testing.T) {
	authz, refreshes, _ := fakeAuthz(t)
	var got atomic.Value
	adminAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
		_, _ = w.Write([]byte("[]"))
	}))
	t.Cleanup(adminAPI.Close)
	path := filepath.Join(t.TempDir(), "credentials.json")
	t.Setenv("HELIX_ADMIN_TOKEN", "")
	t.Setenv("HELIX_CREDENTIALS", path)

	var out strings.Builder
	err := run(context.Background(), []string{"clients", "list", "--admin-url", adminAPI.URL}, &out)
	if err == nil || !strings.Contains(err.Error(), "helixctl login") {
		t.Fatalf("nobody signed in: %v, want an error naming helixctl login", err)
	}
	if err := cliauth.Save(path, &cliauth.Credentials{Issuer: authz.URL, ClientID: cliauth.ClientID,
		AccessToken: "old-access", RefreshToken: "hxr_old", ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"clients", "list", "--admin-url", adminAPI.URL}, &out); err != nil {
		t.Fatal(err)
	}
	if got.Load() != "Bearer new-access" || refreshes.Load() != 1 {
		t.Fatalf("admin call sent %q after %d refreshes; want the refreshed person's token", got.Load(), refreshes.Load())
	}
	// An admin token, when given, wins.
	t.Setenv("HELIX_ADMIN_TOKEN", "an-admin-token-of-at-least-32-characters")
	if err := run(context.Background(), []string{"clients", "list", "--admin-url", adminAPI.URL}, &out); err != nil {
		t.Fatal(err)
	}
	if got.Load() != "Bearer an-admin-token-of-at-least-32-characters" {
		t.Fatalf("admin call sent %q; want the admin token", got.Load())
	}
}
