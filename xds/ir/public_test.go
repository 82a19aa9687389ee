package ir

import (
	"errors"
	"strings"
	"testing"
)

func TestValidatePublic(t *testing.T) {
	tls := func() *UpstreamTLS { return &UpstreamTLS{CAFile: "/pki/ca.crt", ServerName: "helix-authz"} }
	tests := []struct {
		name   string
		public Upstream
		field  string // "" = valid
	}{
		{"loopback, plaintext", Upstream{Address: "127.0.0.1", Port: 8090}, ""},
		{"remote, server TLS", Upstream{Address: "helix-authz", Port: 8090, TLS: tls()}, ""},
		{"remote, with a client certificate", Upstream{Address: "helix-authz", Port: 8090,
			TLS: &UpstreamTLS{CAFile: "/pki/ca.crt", CertFile: "/pki/c.crt", KeyFile: "/pki/c.key", ServerName: "helix-authz"}}, ""},
		{"remote, plaintext", Upstream{Address: "10.0.0.1", Port: 8090}, "authz.public.tls"},
		{"remote replica, plaintext", Upstream{Address: "127.0.0.1", Port: 8090, Replicas: []Replica{{Address: "10.0.0.1", Port: 8090}}}, "authz.public.tls"},
		{"no port", Upstream{Address: "127.0.0.1"}, "authz.public.port"},
		{"bad replica", Upstream{Address: "127.0.0.1", Port: 8090, Replicas: []Replica{{Address: "a b", Port: 1}}}, "authz.public.replicas[0].address"},
		{"no CA", Upstream{Address: "helix-authz", Port: 8090, TLS: &UpstreamTLS{ServerName: "helix-authz"}}, "authz.public.tls.ca_file"},
		{"relative CA", Upstream{Address: "helix-authz", Port: 8090, TLS: &UpstreamTLS{CAFile: "ca.crt", ServerName: "helix-authz"}}, "authz.public.tls.ca_file"},
		{"no server name", Upstream{Address: "helix-authz", Port: 8090, TLS: &UpstreamTLS{CAFile: "/pki/ca.crt"}}, "authz.public.tls.server_name"},
		{"certificate without key", Upstream{Address: "helix-authz", Port: 8090,
			TLS: &UpstreamTLS{CAFile: "/pki/ca.crt", CertFile: "/pki/c.crt", ServerName: "helix-authz"}}, "authz.public.tls.key_file"},
		{"key without certificate", Upstream{Address: "helix-authz", Port: 8090,
			TLS: &UpstreamTLS{CAFile: "/pki/ca.crt", KeyFile: "/pki/c.key", ServerName: "helix-authz"}}, "authz.public.tls.cert_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := validGateway()
			p := tc.public
			g.AuthZ.Public = &p
			err := g.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("err = %v, want one naming %s", err, tc.field)
			}
		})
	}
}
