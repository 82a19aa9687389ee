package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/translate"
)

func TestLoadExample(t *testing.T) {
	c, err := Load("testdata/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gateway()
	dir, _ := filepath.Abs("testdata")
	if want := filepath.Join(dir, "pki/envoy-server.crt"); g.Listener.TLS == nil || g.Listener.TLS.CertFile != want {
		t.Errorf("listener cert = %+v, want %s (resolved against the file's directory)", g.Listener.TLS, want)
	}
	want := []ir.Plan{{Name: "free", RequestsPerSecond: 5}, {Name: "standard", RequestsPerSecond: 1000}}
	if g.RateLimit == nil || len(g.RateLimit.Plans) != 2 || g.RateLimit.Plans[0] != want[0] || g.RateLimit.Plans[1] != want[1] {
		t.Errorf("plans = %+v, want %+v", g.RateLimit, want)
	}
	if g.RateLimit.FailureModeDeny {
		t.Error("failure_mode open gave FailureModeDeny")
	}
	if g.AuthZ.Timeout != time.Second || g.AuthZ.MaxRequestBytes != 256 || g.AuthZ.FailureModeAllow {
		t.Errorf("authz = %+v", g.AuthZ)
	}
	if g.Retry.NumRetries != 2 || g.Timeouts.Stream != 0 || g.Timeouts.Request != time.Minute {
		t.Errorf("retry/timeouts = %+v %+v", g.Retry, g.Timeouts)
	}
	if p := g.AuthZ.Public; p == nil || p.Port != 8090 || p.TLS == nil || p.TLS.ServerName != "helix-authz" || p.TLS.CertFile != "" {
		t.Errorf("authz public = %+v", p)
	}
	if g.Workers == nil || g.Workers.ServerName != "helix-worker" {
		t.Errorf("workers tls = %+v", g.Workers)
	}

	// What the file describes translates, with a worker added.
	g.Pools = []ir.Pool{{Model: "simple", Endpoints: []ir.Endpoint{{Address: "10.0.0.5", Port: 8001, HTTPPort: 8000, Ready: true}}}}
	g.DefaultPool = ir.Pool{Endpoints: g.Pools[0].Endpoints}
	if _, err := translate.Translate(g); err != nil {
		t.Fatalf("translate: %v", err)
	}
}

func TestPlans(t *testing.T) {
	tests := []struct {
		name, yaml string
		names      []string
		def        string
	}{
		{"rate limits on", base + "ratelimit: {default_plan: free}\nplans:\n  standard: {requests_per_second: 9}\n  free: {requests_per_second: 5}\n",
			[]string{"free", "standard"}, "free"},
		{"plans without rate limits", base + "plans:\n  gold: {requests_per_minute: 60}\n", []string{"gold"}, ""},
		{"no plans", base, []string{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "g.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := c.PlanNames(); !slices.Equal(got, tc.names) {
				t.Errorf("PlanNames() = %q, want %q", got, tc.names)
			}
			if got := c.DefaultPlan(); got != tc.def {
				t.Errorf("DefaultPlan() = %q, want %q", got, tc.def)
			}
		})
	}
}

func TestGatewayDefaults(t *testing.T) {
	c, err := Parse([]byte("listener: {address: 127.0.0.1, port: 8443}\nauthz: {address: '127.0.0.1:9001'}\nretry: {num_retries: 0}\n"), "/etc/helix/g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gateway()
	if g.RateLimit != nil || g.CORS != nil || g.Workers != nil || g.Listener.TLS != nil {
		t.Errorf("optional parts should be off: %+v", g)
	}
	if g.Retry.NumRetries != 0 {
		t.Errorf("num_retries: 0 must turn retries off, got %d", g.Retry.NumRetries)
	}
	if g.AuthZ.Timeout != ir.DefaultAuthZTimeout || g.Timeouts.Idle != ir.DefaultIdleTimeout {
		t.Errorf("defaults not applied: %+v %+v", g.AuthZ, g.Timeouts)
	}
	// Gateway returns a fresh value each time.
	g.Listener.ALPN[0] = "changed"
	if c.Gateway().Listener.ALPN[0] != "h2" {
		t.Error("Gateway shares state between calls")
	}
}

const base = `listener:
  address: 127.0.0.1
  port: 8443
authz:
  address: 127.0.0.1:9001
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, "g.yaml:LINE: field: ..."
	}{
		{"unknown field", base + "  bogus: 1\n", []string{"g.yaml:6: field bogus not found"}},
		{"unknown top-level field", base + "listeners: []\n", []string{"g.yaml:6: field listeners not found"}},
		{"wrong type", "listener:\n  address: 127.0.0.1\n  port: https\n", []string{"g.yaml:3: cannot unmarshal !!str `https` into uint32"}},
		{"integer duration", base + "timeouts:\n  request: 5\n", []string{"g.yaml:7:"}},
		{"bad duration", base + "timeouts:\n  request: soon\n", []string{"g.yaml:7:"}},
		{"syntax", "listener: [\n", []string{"g.yaml"}},
		{"two documents", base + "---\n" + base, []string{"more than one YAML document"}},
		{"empty", "", []string{"empty file"}},
		{"duplicate key", base + "authz: {address: '127.0.0.1:1'}\n", []string{"already defined"}},
		{"tls required off loopback", "listener:\n  address: 0.0.0.0\n  port: 443\nauthz:\n  address: 127.0.0.1:9001\n",
			[]string{"g.yaml:1: listener.tls: required unless the listener is on loopback"}},
		{"listener address", "listener:\n  address: localhost\n  port: 443\nauthz:\n  address: 127.0.0.1:9001\n",
			[]string{"g.yaml:2: listener.address: must be an IP address"}},
		{"authz address", "listener:\n  address: 127.0.0.1\n  port: 443\nauthz:\n  address: 127.0.0.1\n",
			[]string{"g.yaml:5: authz.address: must be host:port"}},
		{"authz missing", "listener:\n  address: 127.0.0.1\n  port: 443\n", []string{"g.yaml: authz.address: required"}},
		{"authz tls off loopback", "listener:\n  address: 127.0.0.1\n  port: 443\nauthz:\n  address: helix-authz:9001\n",
			[]string{"g.yaml:4: authz.tls: required unless the address is loopback"}},
		{"authz tls incomplete", base + "  tls:\n    ca_file: ca.crt\n",
			[]string{"g.yaml:6: authz.tls.cert_file: required", "g.yaml:6: authz.tls.key_file: required"}},
		{"max request bytes", base + "  max_request_bytes: 1\n", []string{"g.yaml:6: authz.max_request_bytes: must be 16..65536"}},
		{"plan without limits", base + "plans:\n  free: {}\n", []string{"g.yaml:7: plans.free: needs requests_per_second"}},
		{"plan without limits, with a ratelimit section", base + "ratelimit:\n  domain: helix\nplans:\n  free: {}\n",
			[]string{"g.yaml:9: plans.free: needs requests_per_second"}},
		{"plan name", base + "plans:\n  'a b': {requests_per_second: 1}\n", []string{"g.yaml:7: plans.a b: must be letters, digits"}},
		{"plan unknown field", base + "plans:\n  free: {rps: 1}\n", []string{"g.yaml:7: field rps not found"}},
		{"ratelimit failure mode", base + "ratelimit:\n  domain: helix\n  failure_mode: maybe\n",
			[]string{`g.yaml:8: ratelimit.failure_mode: must be "open" or "closed"`}},
		{"ratelimit default plan", base + "ratelimit:\n  domain: helix\n  default_plan: gold\nplans:\n  free: {requests_per_second: 5}\n",
			[]string{`g.yaml:8: ratelimit.default_plan: no plan named "gold" (plans: free)`}},
		{"ratelimit without a default plan", base + "ratelimit:\n  domain: helix\nplans:\n  free: {requests_per_second: 5}\n",
			[]string{`g.yaml:6: ratelimit.default_plan: required: the plan of clients with none or one not listed (one of free)`}},
		{"ratelimit without plans", base + "ratelimit:\n  domain: helix\n",
			[]string{`g.yaml:6: ratelimit.default_plan: required`}},
		{"ratelimit domain", base + "ratelimit:\n  domain: 'a b'\n", []string{"g.yaml:7: ratelimit.domain"}},
		// helix-ratelimit is retired: a file written for it says so, field
		// by field, instead of "field address not found".
		{"ratelimit address (retired)", base + "ratelimit:\n  address: 127.0.0.1:8081\n  default_plan: free\nplans:\n  free: {requests_per_second: 5}\n",
			[]string{"g.yaml:7: ratelimit.address: helix-ratelimit is retired", "helix-authz counts rate limits in Redis", "--redis-address"}},
		{"ratelimit tls (retired)", base + "ratelimit:\n  default_plan: free\n  tls: {ca_file: ca.crt}\nplans:\n  free: {requests_per_second: 5}\n",
			[]string{"g.yaml:8: ratelimit.tls: helix-ratelimit is retired", "--redis-tls"}},
		{"ratelimit address and tls (retired)", base + "ratelimit: {address: '127.0.0.1:8081', tls: {ca_file: ca.crt}}\n",
			[]string{"g.yaml:6: ratelimit.address: helix-ratelimit is retired", "g.yaml:6: ratelimit.tls: helix-ratelimit is retired"}},
		{"negative timeout", base + "timeouts:\n  request: -1s\n", []string{"g.yaml:7: timeouts.request: must be"}},
		{"negative stream timeout", base + "timeouts:\n  stream: -1s\n", []string{"g.yaml:7: timeouts.stream: must be"}},
		{"retry condition", base + "retry:\n  on: [unavailable, sometimes]\n", []string{`g.yaml:7: retry.on[1]: unknown retry condition "sometimes"`}},
		{"retry budget", base + "retry:\n  budget_percent: 150\n", []string{"g.yaml:7: retry.budget_percent"}},
		{"per-try over request", base + "timeouts: {request: 1s}\nretry: {per_try_timeout: 2s}\n", []string{"g.yaml:7: retry.per_try_timeout"}},
		{"cors wildcard with credentials", base + "cors:\n  allow_origins: ['*']\n  allow_credentials: true\n",
			[]string{`g.yaml:7: cors.allow_origins[0]: "*" cannot be combined with allow_credentials`}},
		{"cors origin", base + "cors:\n  allow_origins: [example.com]\n", []string{"g.yaml:7: cors.allow_origins[0]: must be scheme://host"}},
		{"cors empty", base + "cors:\n  max_age: 1m\n", []string{"g.yaml:6: cors.allow_origins: must not be empty"}},
		{"health threshold", base + "health_check:\n  healthy_threshold: 1000\n", []string{"g.yaml:7: health_check.healthy_threshold"}},
		{"alpn", "listener:\n  address: 127.0.0.1\n  port: 443\n  alpn: [h3]\nauthz:\n  address: 127.0.0.1:9001\n",
			[]string{`g.yaml:4: listener.alpn[0]: must be h2 or http/1.1, got "h3"`}},
		{"workers tls server name", base + "workers_tls: {ca_file: a, cert_file: b, key_file: c, server_name: 'not a name'}\n",
			[]string{"g.yaml:6: workers_tls.server_name: must be a DNS name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "/etc/helix/g.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain %q", err, w)
				}
			}

		})
	}
}

// A file of the wrong shape is reported as such, and its model is not
// checked: a wrong address is reported once, not again as "tls required".
func TestNoCascadeErrors(t *testing.T) {
	_, err := Parse([]byte("listener:\n  address: 127.0.0.1\n  port: 443\nretry:\n  on: [sometimes]\n"), "g.yaml")
	if err == nil || !strings.Contains(err.Error(), "authz.address: required") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "authz.tls") || strings.Contains(err.Error(), "retry.on") {
		t.Errorf("err = %v, should name the address only", err)
	}
}

func TestParseSizeLimit(t *testing.T) {
	big := base + "# " + strings.Repeat("x", MaxFileBytes) + "\n"
	if _, err := Parse([]byte(big), "g.yaml"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want a size error", err)
	}
	path := filepath.Join(t.TempDir(), "g.yaml")
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Load of a large file: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}
