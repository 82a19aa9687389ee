package server

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/extauthz/mail"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/mailtest"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/tlsfiles"
	catalogv1 "github.com/helixflow/helixflow/proto/catalog/v1"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	xdscatalog "github.com/helixflow/helixflow/xds/catalog"
	"github.com/helixflow/helixflow/xds/registry"
)

// staticWorkers is a worker source of fixed workers.
type staticWorkers []registry.Worker

func (s staticWorkers) Snapshot() []registry.Worker { return s }

// startCatalog serves helix-xds's own Catalog service over mTLS with the
// development PKI's certificates and returns how helix-authz reaches it.
func startCatalog(t *testing.T) catalog.DialConfig {
	t.Helper()
	dir := t.TempDir()
	authzClient := pki.Spec{Name: "test-authz-catalog-client", CommonName: "helix-authz", Usage: pki.ClientAuth,
		URIs: []*url.URL{identity.URI(identity.Authz)}}
	if _, err := pki.Init(context.Background(), pki.Options{Dir: dir}, append(pki.LocalSpecs(), authzClient)); err != nil {
		t.Fatal(err)
	}
	caFile, _ := pki.Files(dir, pki.CAName)
	cert, key := pki.Files(dir, pki.XDSServer)
	conf, err := tlsfiles.ServerConfig(cert, key, caFile)
	if err != nil {
		t.Fatal(err)
	}
	info := &registryv1.ModelInfo{Platform: "onnxruntime_onnx", MaxBatchSize: 8,
		Inputs:     []*registryv1.TensorInfo{{Name: "INPUT0", Datatype: "FP32", Shape: []int64{16}}},
		Outputs:    []*registryv1.TensorInfo{{Name: "OUTPUT0", Datatype: "FP32", Shape: []int64{16}}},
		ConfigJson: `{"name":"simple"}`}
	src := staticWorkers{{ID: "w1", Address: "127.0.0.1", GRPCPort: 8001, Ready: true, Models: []registry.Model{
		{Name: "densenet", Versions: []string{"1"}, Ready: true},
		{Name: "private", Versions: []string{"1"}, Ready: true},
		{Name: "simple", Versions: []string{"1"}, Ready: true, Info: info},
	}}}
	cat, err := xdscatalog.New(xdscatalog.Config{Source: src, Readers: identity.CatalogReaders()})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(conf)))
	catalogv1.RegisterCatalogServer(gs, cat)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cf, kf := pki.Files(dir, authzClient.Name)
	return catalog.DialConfig{Address: lis.Addr().String(), CAFile: caFile, CertFile: cf, KeyFile: kf}
}

// peopleReplica starts one replica serving people (mail to a mailpit) on
// a fresh database, with opts, and signs email in.
func peopleReplica(t *testing.T, email string, opts ...func(*Config)) (*replica, *person) {
	t.Helper()
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	mp := mailtest.Start(t, mailtest.Options{})
	smtp, err := mail.NewSMTP(mail.SMTPConfig{Address: mp.SMTP, TLS: mail.TLSNone, From: "helix@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, dsn, append([]func(*Config){func(c *Config) { c.Mail = smtp }}, opts...)...)
	return r, signIn(t, dsn, r, email)
}

// getModels calls the public port with header (name, value pairs) and
// a session cookie when cookie is not "".
func getModels(t *testing.T, base, path, cookie string, header ...string) (int, []string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if cookie != "" {
		req.Header.Set("Cookie", session.CookieName+"="+cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var l catalog.ListResponse
	names := []string{}
	if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &l) == nil {
		for _, m := range l.Models {
			names = append(names, m.Name)
		}
	}
	return resp.StatusCode, names, string(body)
}

// TestModelCatalogue: helix-authz lists helix-xds's catalogue (its real
// Catalog service over mTLS) filtered by the caller: a person by their
// organizations' policy (cookie or helixctl's bearer token), a client's
// token and an API key by their scopes and model list.
func TestModelCatalogue(t *testing.T) {
	xds := startCatalog(t)
	a, p := peopleReplica(t, "models@example.test", func(c *Config) { c.Catalog = xds })
	all := []string{"densenet", "private", "simple"}

	// In no organization yet: nothing.
	if code, names, body := getModels(t, p.base, "/api/v1/models", p.cookie); code != 200 || len(names) != 0 {
		t.Fatalf("person without organization: %d %s", code, body)
	}
	var org struct{ ID string }
	if code, body := p.call(t, "POST", "/api/v1/orgs", map[string]any{"name": "Acme"}, &org); code != http.StatusCreated {
		t.Fatalf("create organization: %d %s", code, body)
	}
	// The default policy (models:infer, models:read): every model.
	if code, names, body := getModels(t, p.base, "/api/v1/models", p.cookie); code != 200 || !slices.Equal(names, all) {
		t.Fatalf("person, default policy: %d %v %s", code, names, body)
	}
	access, _ := helixctlLogin(t, a, p)
	if code, names, body := getModels(t, p.base, "/api/v1/models", "", "Authorization", "Bearer "+access); code != 200 || !slices.Equal(names, all) {
		t.Fatalf("person's bearer token: %d %v %s", code, names, body)
	}
	// A narrower policy narrows what the person sees.
	if st := a.adminCall(t, "PUT", "/admin/v1/orgs/"+org.ID+"/policy", map[string]any{"allowed_plans": []string{"free"},
		"allowed_scopes": []string{"models:simple:infer"}, "max_api_keys": 10, "max_clients": 5}, nil); st != http.StatusOK {
		t.Fatalf("set policy: %d", st)
	}
	if code, names, body := getModels(t, p.base, "/api/v1/models", p.cookie); code != 200 || !slices.Equal(names, []string{"simple"}) {
		t.Fatalf("person, narrow policy: %d %v %s", code, names, body)
	}
	code, _, body := getModels(t, p.base, "/api/v1/models/simple", p.cookie)
	var m catalog.Model
	if code != 200 || json.Unmarshal([]byte(body), &m) != nil || m.Name != "simple" || m.Platform != "onnxruntime_onnx" ||
		m.ReadyWorkers != 1 || string(m.Config) != `{"name":"simple"}` || len(m.Inputs) != 1 || m.Inputs[0].Shape[0] != 16 {
		t.Fatalf("detail: %d %s", code, body)
	}
	if code, _, body := getModels(t, p.base, "/api/v1/models/private", p.cookie); code != 404 || !strings.Contains(body, "not_found") {
		t.Fatalf("a model outside the policy: %d %s", code, body)
	}

	// Machines: a client's token and an API key, by scopes and models.
	c := newClient(t, a, []string{"models:infer"}, []string{"simple", "densenet"})
	waitFor(t, func() bool { _, st := a.token(t, c, ""); return st == http.StatusOK })
	tok, _ := a.token(t, c, "")
	if code, names, body := getModels(t, p.base, "/api/v1/models", "", "Authorization", "Bearer "+tok); code != 200 || !slices.Equal(names, []string{"densenet", "simple"}) {
		t.Fatalf("client token: %d %v %s", code, names, body)
	}
	key := newKey(t, a, c.ClientID)
	waitFor(t, func() bool {
		code, _, _ := getModels(t, p.base, "/api/v1/models", "", "X-Api-Key", key)
		return code == 200
	})
	for _, h := range [][]string{{"X-Api-Key", key}, {"Authorization", "Bearer " + key}} {
		if code, names, body := getModels(t, p.base, "/api/v1/models", "", h...); code != 200 || !slices.Equal(names, []string{"densenet", "simple"}) {
			t.Fatalf("API key in %s: %d %v %s", h[0], code, names, body)
		}
	}
	if code, _, body := getModels(t, p.base, "/api/v1/models", "", "Authorization", "Bearer hx_not-a-key"); code != 401 || !strings.Contains(body, "unauthorized") {
		t.Fatalf("bad key: %d %s", code, body)
	}
	if code, _, body := getModels(t, p.base, "/api/v1/models", ""); code != 401 {
		t.Fatalf("anonymous: %d %s", code, body)
	}
}

// TestModelCatalogueOff: without helix-xds's address the catalogue says it
// is not configured; with helix-xds down, that it cannot be read now.
func TestModelCatalogueOff(t *testing.T) {
	_, p := peopleReplica(t, "off@example.test")
	if code, _, body := getModels(t, p.base, "/api/v1/models", p.cookie); code != 503 || !strings.Contains(body, "not configured") {
		t.Fatalf("not configured: %d %s", code, body)
	}
	xds := startCatalog(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xds.Address = lis.Addr().String()
	lis.Close() // nothing listens there
	_, q := peopleReplica(t, "down@example.test", func(c *Config) { c.Catalog = xds })
	if code, _, body := getModels(t, q.base, "/api/v1/models", q.cookie); code != 503 || !strings.Contains(body, "cannot be read") {
		t.Fatalf("helix-xds down: %d %s", code, body)
	}
}
