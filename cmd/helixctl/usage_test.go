package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ledger "github.com/helixflow/helixflow/extauthz/usage"
	"github.com/helixflow/helixflow/extauthz/webapi"
	"github.com/helixflow/helixflow/internal/cliauth"
)

// fakeUsageAPI stands in for helix-authz's usage reports (extauthz/usage,
// tested there against Postgres): it records what helixctl asked and
// answers one row.
func fakeUsageAPI(t *testing.T) (*httptest.Server, func() *http.Request) {
	t.Helper()
	var (
		mu   sync.Mutex
		last *http.Request
	)
	p50 := 1.5
	rep := ledger.Report{Granularity: "day", From: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC),
		Rows: []ledger.Row{{Start: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), ClientID: "c1", Model: "simple", Requests: 12, Inferences: 24,
			ComputeSeconds: 0.25, LatencyP50Ms: &p50}}}
	rep.Totals.Requests, rep.Totals.Inferences = 12, 24
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last = r
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer person-token" && r.Header.Get("X-Api-Key") != "hx_key" {
			webapi.WriteError(w, 401, webapi.CodeUnauthorized, "no")
			return
		}
		if r.URL.Query().Get("granularity") == "week" {
			webapi.WriteError(w, 400, webapi.CodeInvalidRequest, `bad query: granularity "week": want hour or day`)
			return
		}
		if r.URL.Query().Get("format") == "csv" {
			_ = ledger.WriteCSV(w, &rep)
			return
		}
		webapi.WriteJSON(w, 200, rep)
	}))
	t.Cleanup(srv.Close)
	return srv, func() *http.Request { mu.Lock(); defer mu.Unlock(); return last }
}

func TestUsageCommand(t *testing.T) {
	srv, last := fakeUsageAPI(t)
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials.json")
	if err := cliauth.Save(creds, &cliauth.Credentials{Issuer: srv.URL, ClientID: cliauth.ClientID,
		AccessToken: "person-token", RefreshToken: "hxr_x", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"HELIX_ISSUER", "HELIX_CA_FILE", "HELIX_CLIENT_ID", "HELIX_CLIENT_SECRET", "HELIX_API_KEY", "HELIX_CREDENTIALS"} {
		t.Setenv(env, "")
	}
	const org = "0b9f3c6e-7d0a-4c1e-9a51-1f0e5d1a2b3c"
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		path      string
		query     string
		want, not []string
	}{
		{"an organization's, per day", nil, []string{"usage", "--org", org, "--credentials", creds, "--granularity", "day", "--from", "2026-12-01", "--model", "simple"},
			"/api/v1/orgs/" + org + "/usage", "from=2026-12-01&granularity=day&model=simple",
			[]string{"START", "c1", "simple", "12", "24", "0.250", "1.5", "TOTAL"}, nil},
		{"CSV", nil, []string{"usage", "--org", org, "--credentials", creds, "--csv"},
			"/api/v1/orgs/" + org + "/usage", "format=csv&granularity=hour",
			[]string{"start,client_id,model,requests", "c1,simple,12,24"}, []string{"TOTAL"}},
		{"a client's own with an API key, JSON", map[string]string{"HELIX_API_KEY": "hx_key", "HELIX_ISSUER": srv.URL}, []string{"usage", "--json"},
			"/api/v1/usage", "granularity=hour", []string{`"rows":[{"start":"2026-12-01T00:00:00Z"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			if err := run(context.Background(), tt.args, &out); err != nil {
				t.Fatal(err)
			}
			r := last()
			if r.URL.Path != tt.path || r.URL.RawQuery != tt.query {
				t.Fatalf("asked %s?%s, want %s?%s", r.URL.Path, r.URL.RawQuery, tt.path, tt.query)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out.String(), n) {
					t.Errorf("output has %q:\n%s", n, out.String())
				}
			}
		})
	}
	var body map[string]any
	var out bytes.Buffer
	if err := run(context.Background(), []string{"usage", "--org", org, "--credentials", creds, "--output", "json"}, &out); err != nil || json.Unmarshal(out.Bytes(), &body) != nil {
		t.Fatalf("--output json: %v %q", err, out.String())
	}
}

func TestUsageCommandRefusals(t *testing.T) {
	srv, _ := fakeUsageAPI(t)
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials.json")
	if err := cliauth.Save(creds, &cliauth.Credentials{Issuer: srv.URL, ClientID: cliauth.ClientID,
		AccessToken: "person-token", RefreshToken: "hxr_x", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"HELIX_ISSUER", "HELIX_CA_FILE", "HELIX_CLIENT_ID", "HELIX_CLIENT_SECRET", "HELIX_API_KEY", "HELIX_CREDENTIALS"} {
		t.Setenv(env, "")
	}
	tests := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"an argument", []string{"usage", "extra"}, true, "no argument"},
		{"csv and json", []string{"usage", "--csv", "--json"}, true, "exclude"},
		{"org with a client", []string{"usage", "--org", "x", "--client-id", "c1"}, true, "--org"},
		{"the API's refusal", []string{"usage", "--org", "x", "--credentials", creds, "--granularity", "week"}, false, "granularity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, &bytes.Buffer{})
			if err == nil || errors.Is(err, errUsage) != tt.usage || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want usage=%v containing %q", err, tt.usage, tt.want)
			}
		})
	}
}
