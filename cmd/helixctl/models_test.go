package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/internal/cliauth"
)

// The catalogue's own handler (extauthz/catalog, tested there and in
// extauthz/server against Postgres and helix-xds) behind a stand-in for
// the credential checks and a token endpoint.

type modelsSource []catalog.Model

func (s modelsSource) Models(context.Context) ([]catalog.Model, error) { return s, nil }

// modelsMachines: the client's token sees "simple"; the API key "other".
type modelsMachines struct{}

func (modelsMachines) Authenticate(_ context.Context, authorization, key string) (*check.Principal, error) {
	switch {
	case authorization == "Bearer client-token":
		return &check.Principal{ClientID: "c1", Scopes: []string{"models:read"}, Models: []string{"simple"}}, nil
	case key == "hx_key":
		return &check.Principal{ClientID: "c2", Scopes: []string{"models:other:infer"}, Models: []string{"*"}}, nil
	case authorization == "Bearer person-token":
		return &check.Principal{ClientID: "helixctl", Scopes: []string{"models:read"}, Models: []string{"*"}}, nil
	}
	return nil, fmt.Errorf("%w (invalid)", check.ErrUnauthenticated)
}

func fakeCatalogAPI(t *testing.T) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	mux := http.NewServeMux()
	catalog.NewHandler(catalog.HandlerConfig{
		Source: modelsSource{
			{Name: "other", Versions: []string{"1"}, Inputs: []catalog.Tensor{}, Outputs: []catalog.Tensor{}},
			{Name: "simple", Versions: []string{"1", "2"}, Ready: true, Workers: 2, ReadyWorkers: 1, Platform: "onnxruntime_onnx",
				MaxBatchSize: 8, Inputs: []catalog.Tensor{{Name: "INPUT0", Datatype: "FP32", Shape: []int64{16}}},
				Outputs: []catalog.Tensor{{Name: "OUTPUT0", Datatype: "FP32", Shape: []int64{-1}}}},
		},
		Machines: modelsMachines{}, Logger: slog.New(slog.DiscardHandler),
	}).Mount(mux)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "token_endpoint": srv.URL + "/oauth2/token"})
	})
	mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, _ := r.BasicAuth()
		if r.FormValue("grant_type") != "client_credentials" || id != "c1" || secret != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"client authentication failed"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"client-token","token_type":"bearer","expires_in":300}`))
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestModelsList(t *testing.T) {
	srv := fakeCatalogAPI(t)
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials.json")
	if err := cliauth.Save(creds, &cliauth.Credentials{Issuer: srv.URL, ClientID: cliauth.ClientID,
		AccessToken: "person-token", RefreshToken: "hxr_x", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{"HELIX_ISSUER", "HELIX_CA_FILE", "HELIX_CLIENT_ID", "HELIX_CLIENT_SECRET", "HELIX_API_KEY", "HELIX_CREDENTIALS"} {
		t.Setenv(env, "")
	}

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string // in the output
		not  []string
	}{
		{"signed-in person", nil, []string{"models", "list", "--credentials", creds},
			[]string{"NAME", "simple  true", "1/2", "1,2", "onnxruntime_onnx", "INPUT0:FP32[16]", "OUTPUT0:FP32[-1]", "other"}, nil},
		{"client credentials", nil, []string{"models", "list", "--issuer", srv.URL, "--client-id", "c1", "--client-secret-file", secretFile},
			[]string{"simple"}, []string{"other"}},
		{"API key from the environment, JSON", map[string]string{"HELIX_API_KEY": "hx_key", "HELIX_ISSUER": srv.URL}, []string{"models", "list", "--json"},
			[]string{`{"models":[{"name":"other"`}, []string{"simple"}},
		{"one model", nil, []string{"models", "get", "simple", "--credentials", creds, "--output", "json"},
			[]string{`"name":"simple"`, `"max_batch_size":8`}, []string{`"models"`}},
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
}

func TestModelsRefusals(t *testing.T) {
	srv := fakeCatalogAPI(t)
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte("nope"), 0o600); err != nil {
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
		{"secret on the command line", []string{"models", "list", "--client-secret", "s3cret"}, true, "--client-secret-file"},
		{"API key on the command line", []string{"models", "list", "--api-key=hx_key"}, true, "--api-key-file"},
		{"unknown subcommand", []string{"models", "delete"}, true, "list, get"},
		{"get without a name", []string{"models", "get"}, true, "model name"},
		{"client without issuer", []string{"models", "list", "--client-id", "c1"}, true, "--issuer"},
		{"client without secret", []string{"models", "list", "--issuer", srv.URL, "--client-id", "c1"}, true, "HELIX_CLIENT_SECRET"},
		{"wrong secret", []string{"models", "list", "--issuer", srv.URL, "--client-id", "c1", "--client-secret-file", wrong}, false, "invalid_client"},
		{"bad key", []string{"models", "list", "--issuer", srv.URL, "--api-key-file", wrong}, false, "HTTP 401 unauthorized"},
		{"not signed in", []string{"models", "list", "--credentials", filepath.Join(dir, "none.json")}, false, "not logged in"},
		{"bad output", []string{"models", "list", "--output", "yaml"}, true, "--output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, &bytes.Buffer{})
			if err == nil || errors.Is(err, errUsage) != tt.usage || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want usage=%v containing %q", err, tt.usage, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "hx_key") {
				t.Fatalf("the error repeats a secret: %v", err)
			}
		})
	}
}
