package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPepperRequiredOffLoopback: a helix-authz any of whose listeners is off
// loopback needs --secret-pepper-file; a loopback-only one (make run, tests)
// may run without.
func TestPepperRequiredOffLoopback(t *testing.T) {
	base := []string{"--database-url=postgres://x", "--issuer=https://auth.example.com", "--gateway-config=gateway.yaml"}
	tls := []string{"--tls-cert-file=/c", "--tls-key-file=/k", "--client-ca-file=/ca"}
	off := append(append([]string{}, tls...), "--http-listen=0.0.0.0:8090", "--grpc-listen=0.0.0.0:9001")
	for _, tc := range []struct {
		name string
		args []string
		want string // "" = accepted
	}{
		{"loopback without pepper", []string{"--plaintext-loopback"}, ""},
		{"loopback with TLS without pepper", tls, ""},
		{"off loopback without pepper", off, "--secret-pepper-file is required"},
		{"admin off loopback without pepper", append(tls, "--admin-listen=0.0.0.0:8091"), "--admin-listen 0.0.0.0:8091"},
		{"metrics off loopback without pepper", append(tls, "--metrics-listen=0.0.0.0:9091"), "--metrics-listen 0.0.0.0:9091"},
		{"off loopback with pepper", append(off, "--secret-pepper-file=/p"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(append(append([]string{}, base...), tc.args...))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--secret-pepper-file")):
				t.Fatalf("got %v, want an error naming %q and --secret-pepper-file", err, tc.want)
			}
		})
	}
}

// TestReadPepperRefusesShortOrEmpty: a pepper file too short to resist a
// guess is refused, naming the flag.
func TestReadPepperRefusesShortOrEmpty(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"none", "", ""},
		{"good", write("good", strings.Repeat("ab", 16)+"\n"), ""},
		{"empty", write("empty", "\n"), "at least 32"},
		{"short", write("short", "pepper"), "at least 32"},
		{"missing", filepath.Join(dir, "missing"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := readPepper(tc.file)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "" && tc.file != "" && len(p) != 32:
				t.Fatalf("pepper %q", p)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--secret-pepper-file")):
				t.Fatalf("got %v, want an error naming %q and --secret-pepper-file", err, tc.want)
			}
		})
	}
}

// TestRedisFlags: the rate-limit counters' Redis flags are checked before
// anything starts.
func TestRedisFlags(t *testing.T) {
	base := []string{"--database-url=postgres://x", "--issuer=https://auth.example.com", "--plaintext-loopback"}
	tests := []struct {
		name string
		args []string
		want string // "" = accepted
	}{
		{"no gateway config", nil, "--gateway-config is required"},
		{"CA without TLS", []string{"--gateway-config=g.yaml", "--redis-ca-file=ca.crt"}, "--redis-ca-file needs --redis-tls"},
		{"TLS with a CA", []string{"--gateway-config=g.yaml", "--redis-address=redis:6379", "--redis-tls", "--redis-ca-file=ca.crt"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(append(append([]string{}, base...), tt.args...))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}
