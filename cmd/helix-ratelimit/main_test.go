package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFlagsRefusesInsecureOrIncomplete(t *testing.T) {
	base := []string{"--redis-address=127.0.0.1:6379", "--xds-address=127.0.0.1:18000"}
	tls := []string{"--tls-cert-file=/c", "--tls-key-file=/k", "--client-ca-file=/ca", "--client-ids=spiffe://helixflow.local/envoy"}
	xdsTLS := []string{"--xds-ca-file=/ca", "--xds-cert-file=/c", "--xds-key-file=/k"}
	for _, tc := range []struct {
		name string
		args []string
		want string // "" = accepted
	}{
		{"loopback plaintext", append(base, "--plaintext-loopback"), ""},
		{"full TLS on all interfaces", append(append(append(base[:1:1], "--xds-address=helix-xds:18000", "--grpc-listen=0.0.0.0:8081"), tls...), xdsTLS...), ""},
		{"plaintext without the flag", base, "--grpc-listen 127.0.0.1:8081: TLS is required"},
		{"plaintext gRPC off loopback", append(base, "--plaintext-loopback", "--grpc-listen=0.0.0.0:8081"), "TLS is required"},
		{"plaintext xDS off loopback", append(append([]string{"--redis-address=127.0.0.1:6379", "--xds-address=10.0.0.1:18000"}, tls...), "--plaintext-loopback"), "--xds-address 10.0.0.1:18000: mTLS is required"},
		{"TLS without client CA", append(base, "--plaintext-loopback", "--tls-cert-file=/c", "--tls-key-file=/k"), "--client-ca-file is required"},
		{"cert without key", append(base, "--plaintext-loopback", "--tls-cert-file=/c"), "go together"},
		{"xDS cert without CA", append(append(base, tls...), "--xds-cert-file=/c", "--xds-key-file=/k"), "--xds-ca-file is required"},
		{"no redis", []string{"--xds-address=127.0.0.1:1", "--plaintext-loopback"}, "--redis-address is required"},
		{"redis without port", []string{"--redis-address=redis", "--xds-address=127.0.0.1:1", "--plaintext-loopback"}, "want host:port"},
		{"bad log level", append(base, "--plaintext-loopback", "--log-level=loud"), "--log-level"},
		{"negative cache", append(base, "--plaintext-loopback", "--local-cache-bytes=-1"), "not negative"},
		{"CA without redis TLS", append(base, "--plaintext-loopback", "--redis-ca-file=/ca"), "needs --redis-tls"},
		{"debug endpoints off loopback", append(append(base[:1:1], "--xds-address=helix-xds:18000", "--debug-listen=0.0.0.0:6070"), append(tls, xdsTLS...)...), "--debug-listen 0.0.0.0:6070: loopback only"},
		{"stray argument", append(base, "--plaintext-loopback", "extra"), "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.args)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestEnvironmentMapsFlagsToTheServiceSettings(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--redis-address=10.1.2.3:6380", "--xds-address=helix-xds:18000",
		"--grpc-listen=0.0.0.0:9081", "--metrics-listen=127.0.0.1:9999",
		"--tls-cert-file=/tls/c", "--tls-key-file=/tls/k", "--client-ca-file=/tls/ca", "--client-ids=spiffe://helixflow.local/envoy",
		"--xds-ca-file=/x/ca", "--xds-cert-file=/x/c", "--xds-key-file=/x/k",
		"--redis-password-file=" + pw, "--redis-tls", "--log-level=warn"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := o.environment()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"GRPC_HOST": "0.0.0.0", "GRPC_PORT": "9081", "HOST": "127.0.0.1", "PORT": "8080",
		"USE_STATSD": "false", "USE_PROMETHEUS": "true", "PROMETHEUS_ADDR": "127.0.0.1:9999",
		"REDIS_URL": "10.1.2.3:6380", "REDIS_SOCKET_TYPE": "tcp", "REDIS_AUTH": "s3cret", "REDIS_TLS": "true",
		"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL": "helix-xds:18000", "CONFIG_GRPC_XDS_NODE_ID": "helix-ratelimit",
		"CONFIG_GRPC_XDS_SERVER_USE_TLS": "true", "CONFIG_GRPC_XDS_SERVER_TLS_SAN": "helix-xds", "CONFIG_GRPC_XDS_SERVER_TLS_CACERT": "/x/ca",
		"GRPC_SERVER_USE_TLS": "true", "GRPC_CLIENT_TLS_CACERT": "/tls/ca", "LOG_LEVEL": "warn",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}

	if _, err := (&options{redisPasswordFile: filepath.Join(t.TempDir(), "missing")}).environment(); err == nil || !strings.Contains(err.Error(), "--redis-password-file") {
		t.Errorf("missing password file: %v", err)
	}
}
