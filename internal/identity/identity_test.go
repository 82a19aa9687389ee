package identity

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"net/url"
	"os"
	"strings"
	"testing"
)

func TestWorker(t *testing.T) {
	if got := Worker("pool-a"); got != "spiffe://helixflow.local/worker/pool-a" {
		t.Fatalf("Worker = %q", got)
	}
	for id, want := range map[string]bool{
		"spiffe://helixflow.local/worker/pool-a":   true,
		"spiffe://helixflow.local/worker/":         false,
		"spiffe://helixflow.local/worker/a/b":      false,
		"spiffe://helixflow.local/worker/Pool":     false,
		"spiffe://other.example/worker/pool-a":     false,
		"spiffe://helixflow.local/envoy":           false,
		"spiffe://helixflow.local/workerx/pool-a":  false,
		"spiffe://helixflow.local/worker/pool-a.b": false,
	} {
		if _, ok := WorkerName(id); ok != want {
			t.Errorf("WorkerName(%q) ok = %v, want %v", id, ok, want)
		}
		if err := ParseWorker(id); (err == nil) != want || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("ParseWorker(%q) = %v", id, err)
		}
	}
}

func cert(uris ...string) *x509.Certificate {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: "test"}}
	for _, u := range uris {
		p, _ := url.Parse(u)
		c.URIs = append(c.URIs, p)
	}
	return c
}

func TestFromCertAndRequire(t *testing.T) {
	tests := []struct {
		name    string
		cert    *x509.Certificate
		want    string
		wantErr string
	}{
		{"envoy", cert(Envoy), Envoy, ""},
		{"with a non-SPIFFE URI too", cert("https://example.com/x", Envoy), Envoy, ""},
		{"none", cert(), "", "carries no SPIFFE ID"},
		{"two", cert(Envoy, Authz), "", "carries 2 SPIFFE IDs"},
		{"other trust domain", cert("spiffe://evil.example/envoy"), "", "outside trust domain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromCert(tc.cert)
			if got != tc.want || (err == nil) != (tc.wantErr == "") || (err != nil && (!strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrDenied))) {
				t.Fatalf("FromCert = %q, %v; want %q, %q", got, err, tc.want, tc.wantErr)
			}
		})
	}
	verify := PeerVerifier(WorkerCallers()...)
	state := func(c *x509.Certificate) tls.ConnectionState {
		return tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	if err := verify(state(cert(Envoy))); err != nil {
		t.Errorf("Envoy refused: %v", err)
	}
	err := verify(state(cert(Worker("w1"))))
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), Worker("w1")+" may not call") {
		t.Errorf("a worker calling a worker: %v", err)
	}
	if err := verify(tls.ConnectionState{}); !errors.Is(err, ErrDenied) {
		t.Errorf("no verified certificate: %v", err)
	}
}

var update = flag.Bool("update", false, "rewrite the Helm chart's _identity.tpl from this package")

// helmTemplate is the Helm chart's view of the identities: its client
// certificates' URI SANs come from here, so that the chart and the Go code
// cannot drift apart.
func helmTemplate() string {
	def := func(name, value string) string {
		return "{{- define \"helixflow.identity." + name + "\" -}}" + value + "{{- end }}\n"
	}
	return "{{- /* Generated from internal/identity; do not edit. Regenerate: go test ./internal/identity -run TestHelmTemplate -update */ -}}\n" +
		def("envoy", Envoy) +
		def("authz", Authz) +
		// Called with a worker pool's name: (include "helixflow.identity.worker" "cpu").
		def("worker", Worker("{{ . }}"))
}

func TestHelmTemplate(t *testing.T) {
	const path = "../../deploy/helm/helixflow/templates/_identity.tpl"
	want := helmTemplate()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is stale: run go test ./internal/identity -run TestHelmTemplate -update\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
