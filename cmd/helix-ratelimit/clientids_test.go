package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestClientIDsFlag(t *testing.T) {
	base := []string{"--redis-address=127.0.0.1:6379", "--xds-address=127.0.0.1:18000", "--plaintext-loopback"}
	tls := []string{"--tls-cert-file=/c", "--tls-key-file=/k", "--client-ca-file=/ca"}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"TLS with client ids":    {append(append(base, tls...), "--client-ids=spiffe://helixflow.local/envoy"), ""},
		"TLS without client ids": {append(base, tls...), "--client-ids is required with TLS"},
		"client ids without TLS": {append(base, "--client-ids=spiffe://helixflow.local/envoy"), "--client-ids needs"},
	} {
		_, err := parseFlags(tc.args)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestVerifyClientIDs(t *testing.T) {
	cert := func(uris ...string) tls.ConnectionState {
		c := &x509.Certificate{}
		for _, u := range uris {
			p, _ := url.Parse(u)
			c.URIs = append(c.URIs, p)
		}
		return tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	verify := verifyClientIDs(clientIDs(" spiffe://helixflow.local/envoy ,"))
	for name, tc := range map[string]struct {
		cs tls.ConnectionState
		ok bool
	}{
		"Envoy":             {cert("spiffe://helixflow.local/envoy"), true},
		"a worker":          {cert("spiffe://helixflow.local/worker/w1"), false},
		"helix-ratelimit":   {cert("spiffe://helixflow.local/helix-ratelimit"), false},
		"no identity":       {cert(), false},
		"two identities":    {cert("spiffe://helixflow.local/envoy", "spiffe://helixflow.local/worker/w1"), false},
		"no verified chain": {tls.ConnectionState{}, false},
	} {
		if err := verify(tc.cs); (err == nil) != tc.ok || (err != nil && !errors.Is(err, errClientID)) {
			t.Errorf("%s: %v, want ok %v", name, err, tc.ok)
		}
	}
}
