package main

import (
	"strings"
	"testing"
)

// The catalogue's flags: an address needs the three mTLS files, and the
// files need an address.
func TestXDSFlags(t *testing.T) {
	base := []string{"--database-url=postgres://helix@db/helix", "--issuer=https://auth.example.com",
		"--gateway-config=gateway.yaml", "--plaintext-loopback"}
	files := []string{"--xds-ca-file=ca.crt", "--xds-cert-file=authz-xds-client.crt", "--xds-key-file=authz-xds-client.key"}
	for _, tc := range []struct {
		name string
		args []string
		err  string
	}{
		{name: "off"},
		{name: "on", args: append([]string{"--xds-address=127.0.0.1:18000"}, files...)},
		{name: "address without files", args: []string{"--xds-address=127.0.0.1:18000"}, err: "--xds-address needs"},
		{name: "address without key", args: append([]string{"--xds-address=127.0.0.1:18000"}, files[:2]...), err: "--xds-key-file"},
		{name: "files without address", args: files, err: "need --xds-address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(append(append([]string{}, base...), tc.args...))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseFlags: %v, want an error naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "on" && (o.xds.Address != "127.0.0.1:18000" || o.xds.KeyFile != "authz-xds-client.key") {
				t.Errorf("xds %+v", o.xds)
			}
		})
	}
}
