package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/admin"
)

// clients create --public/--redirect-uri/--grant-type makes a client
// people sign in to; a public one gets no secret.
func TestClientsCreateApp(t *testing.T) {
	c := newCLI(t)
	out := c.mustRun(t, "clients", "create", "--output", "json", "--public", "--scope", "account,models:read",
		"--redirect-uri", "http://127.0.0.1/callback", "--redirect-uri", "https://app.example/cb")
	var v admin.ClientView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if !v.Public || v.ClientSecret != "" || !slices.Equal(v.GrantTypes, []string{"authorization_code", "refresh_token"}) ||
		!slices.Equal(v.RedirectURIs, []string{"http://127.0.0.1/callback", "https://app.example/cb"}) {
		t.Fatalf("created %+v", v)
	}
	stored, err := c.store.GetClient(context.Background(), v.ClientID)
	if err != nil || !stored.Public || len(stored.SecretHash) != 0 {
		t.Fatalf("stored %+v, %v", stored, err)
	}
	table := c.mustRun(t, "clients", "create", "--public", "--scope", "account", "--redirect-uri", "http://127.0.0.1/cb")
	if !strings.Contains(table, "public client: no secret") || strings.Contains(table, "client_secret") {
		t.Fatalf("table:\n%s", table)
	}
	out = c.mustRun(t, "clients", "create", "--output", "json", "--scope", "account", "--grant-type", "authorization_code",
		"--redirect-uri", "https://app.example/cb")
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Public || v.ClientSecret == "" || !slices.Equal(v.GrantTypes, []string{"authorization_code"}) {
		t.Fatalf("confidential app: %+v %v", v, err)
	}
	if _, err := c.run(t, "clients", "create", "--public", "--scope", "account"); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("public client without a redirect URI: %v", err)
	}
}
