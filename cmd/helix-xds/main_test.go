package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/envoy/bootstrap"
)

func TestParseFlags(t *testing.T) {
	tls := []string{"--config=g.yaml", "--tls-cert-file=c", "--tls-key-file=k"}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"mTLS", append(tls, "--client-ca-file=ca", "--xds-listen=0.0.0.0:18000"), ""},
		{"plaintext on loopback, allowed", []string{"--config=g.yaml", "--plaintext-loopback"}, ""},
		{"no config", []string{"--plaintext-loopback"}, "--config is required"},
		{"plaintext by default is refused", []string{"--config=g.yaml"}, "TLS is required"},
		{"plaintext off loopback is refused", []string{"--config=g.yaml", "--plaintext-loopback", "--xds-listen=0.0.0.0:18000"}, "TLS is required"},
		{"TLS without client CA is refused", tls, "--client-ca-file is required"},
		{"cert without key", []string{"--config=g.yaml", "--tls-cert-file=c", "--client-ca-file=ca"}, "go together"},
		{"client CA without TLS", []string{"--config=g.yaml", "--plaintext-loopback", "--client-ca-file=ca"}, "needs --tls-cert-file"},
		{"zero warm timeout", []string{"--config=g.yaml", "--plaintext-loopback", "--warm-timeout=0s"}, "--warm-timeout 0s: must be positive"},
		{"stray argument", []string{"--config=g.yaml", "--plaintext-loopback", "serve"}, "unexpected arguments"},
		{"text logs", []string{"--config=g.yaml", "--plaintext-loopback", "--log-format=text"}, ""},
		{"unknown log format", []string{"--config=g.yaml", "--plaintext-loopback", "--log-format=yaml"}, "--log-format \"yaml\""},
		{"unknown log level", []string{"--config=g.yaml", "--plaintext-loopback", "--log-level=loud"}, "--log-level"},
		{"traces to a loopback collector", []string{"--config=g.yaml", "--plaintext-loopback", "--otlp-endpoint=127.0.0.1:4317", "--otlp-plaintext-loopback"}, ""},
		{"plaintext traces off loopback", []string{"--config=g.yaml", "--plaintext-loopback", "--otlp-endpoint=collector:4317", "--otlp-plaintext-loopback"}, "--otlp-plaintext-loopback"},
		{"sample ratio over 1", []string{"--config=g.yaml", "--plaintext-loopback", "--trace-root-sample-ratio=2"}, "--trace-root-sample-ratio"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("parseFlags = %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("parseFlags = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestBootstrapSubcommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "envoy.yaml")
	args := []string{"--node-id=n1", "--xds-address=10.0.0.1:18000", "--xds-ca-file=/ca", "--xds-cert-file=/c", "--xds-key-file=/k",
		"--xds-server-name=helix-xds", "--admin-address=127.0.0.1:9901"}
	if err := runBootstrap(append(args, "--output="+out), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := bootstrap.Render(bootstrap.Config{
		NodeID: "n1", NodeCluster: "helix", XDSAddress: "10.0.0.1:18000", AdminAddress: "127.0.0.1:9901",
		XDSTLS: &bootstrap.TLS{CAFile: "/ca", CertFile: "/c", KeyFile: "/k", ServerName: "helix-xds"}, MaxConnections: bootstrap.DefaultMaxConnections,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("wrote:\n%s\nwant:\n%s", got, want)
	}
	var stdout bytes.Buffer
	if err := runBootstrap(args, &stdout); err != nil || !bytes.Equal(stdout.Bytes(), want) {
		t.Fatalf("to stdout: %v\n%s", err, stdout.String())
	}
	// TLS without a server name is refused, naming it.
	if err := runBootstrap(args[:len(args)-2], &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "xds tls server name") {
		t.Fatalf("no --xds-server-name: %v", err)
	}
	// Plaintext to a remote helix-xds is refused.
	if err := runBootstrap([]string{"--xds-address=10.0.0.1:18000"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "TLS is required") {
		t.Fatalf("plaintext to a remote helix-xds: %v", err)
	}
}
