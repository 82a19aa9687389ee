package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/xds/ir"
)

func TestAuthzPublic(t *testing.T) {
	y := base + `  public:
    address: helix-authz-0.helix:8090
    replicas: ["10.0.0.9:8090"]
    tls:
      ca_file: pki/ca.crt
      server_name: helix-authz
      watch_dir: pki
  tls: {ca_file: pki/ca.crt, cert_file: pki/c.crt, key_file: pki/c.key, server_name: helix-authz}
`
	// The base's authz address is loopback; with TLS it may stay so.
	c, err := Parse([]byte(y), "/etc/helix/g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := c.Gateway().AuthZ.Public
	want := &ir.Upstream{Address: "helix-authz-0.helix", Port: 8090, Replicas: []ir.Replica{{Address: "10.0.0.9", Port: 8090}},
		TLS: &ir.UpstreamTLS{CAFile: "/etc/helix/pki/ca.crt", ServerName: "helix-authz", WatchDir: filepath.Join("/etc/helix", "pki")}}
	if got == nil || got.Address != want.Address || got.Port != want.Port || len(got.Replicas) != 1 || got.Replicas[0] != want.Replicas[0] ||
		got.TLS == nil || *got.TLS != *want.TLS {
		t.Fatalf("public = %+v (tls %+v), want %+v (tls %+v)", got, got.TLS, want, want.TLS)
	}

	// Absent: no public routes.
	c, err = Parse([]byte(base), "/etc/helix/g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Gateway().AuthZ.Public; p != nil {
		t.Fatalf("public = %+v without authz.public", p)
	}
}

func TestAuthzPublicErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"address", base + "  public: {address: helix-authz}\n", []string{"g.yaml:6: authz.public.address: must be host:port"}},
		{"address missing", base + "  public: {}\n", []string{"g.yaml:6: authz.public.address: required"}},
		{"replica", base + "  public: {address: '127.0.0.1:8090', replicas: ['127.0.0.1:8091', 'x']}\n",
			[]string{"g.yaml:6: authz.public.replicas[1]: must be host:port"}},
		{"tls off loopback", base + "  public:\n    address: helix-authz:8090\n", []string{"g.yaml:6: authz.public.tls: required unless the address is loopback"}},
		{"tls off loopback (a replica)", base + "  public:\n    address: 127.0.0.1:8090\n    replicas: ['10.0.0.2:8090']\n",
			[]string{"authz.public.tls: required unless the address is loopback"}},
		{"no server name", base + "  public:\n    address: helix-authz:8090\n    tls: {ca_file: ca.crt}\n",
			[]string{"g.yaml:8: authz.public.tls.server_name: required with TLS"}},
		{"no ca", base + "  public:\n    address: helix-authz:8090\n    tls: {server_name: helix-authz}\n",
			[]string{"g.yaml:8: authz.public.tls.ca_file: required"}},
		{"bad server name", base + "  public:\n    address: helix-authz:8090\n    tls: {ca_file: ca.crt, server_name: 'a b'}\n",
			[]string{"g.yaml:8: authz.public.tls.server_name: must be a DNS name"}},
		// The public port asks for no client certificate: there is no
		// field for one.
		{"client certificate", base + "  public:\n    address: helix-authz:8090\n    tls: {ca_file: ca.crt, server_name: helix-authz, cert_file: c.crt}\n",
			[]string{"g.yaml:8: field cert_file not found"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "/etc/helix/g.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
