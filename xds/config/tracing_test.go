package config

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/xds/ir"
)

// The tracing section: absent is off; defaults for sampling and the
// service name; 0 is kept; TLS with a CA (server name from the collector's
// host name); plaintext only to loopback; bad values name field and line.
func TestTracing(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want *ir.Tracing // nil: off
		err  string
	}{
		{"absent", base, nil, ""},
		{"defaults", base + "tracing:\n  collector: 127.0.0.1:4317\n",
			&ir.Tracing{Collector: ir.Upstream{Address: "127.0.0.1", Port: 4317}, Sampling: ir.DefaultTracingSampling, ServiceName: ir.DefaultTracingServiceName}, ""},
		{"zero sampling kept", base + "tracing:\n  collector: localhost:4317\n  sampling: 0\n  service_name: edge\n",
			&ir.Tracing{Collector: ir.Upstream{Address: "localhost", Port: 4317}, Sampling: 0, ServiceName: "edge"}, ""},
		{"tls by host name", base + "tracing:\n  collector: otel.example.com:4317\n  sampling: 1\n  ca_file: ca.crt\n",
			&ir.Tracing{Collector: ir.Upstream{Address: "otel.example.com", Port: 4317, TLS: &ir.UpstreamTLS{CAFile: "/etc/helix/ca.crt", ServerName: "otel.example.com"}}, Sampling: 1, ServiceName: ir.DefaultTracingServiceName}, ""},
		{"tls to an IP with a name", base + "tracing:\n  collector: 10.0.0.9:4317\n  ca_file: /pki/ca.crt\n  server_name: otel.internal\n",
			&ir.Tracing{Collector: ir.Upstream{Address: "10.0.0.9", Port: 4317, TLS: &ir.UpstreamTLS{CAFile: "/pki/ca.crt", ServerName: "otel.internal"}}, Sampling: ir.DefaultTracingSampling, ServiceName: ir.DefaultTracingServiceName}, ""},
		{"plaintext off loopback", base + "tracing:\n  collector: otel.example.com:4317\n", nil, "g.yaml:6: tracing.ca_file: required unless the collector is on loopback"},
		{"tls to an IP without a name", base + "tracing:\n  collector: 10.0.0.9:4317\n  ca_file: /pki/ca.crt\n", nil, "g.yaml:6: tracing.server_name: required with TLS"},
		{"server name without ca", base + "tracing:\n  collector: 127.0.0.1:4317\n  server_name: otel\n", nil, "g.yaml:8: tracing.server_name: needs ca_file"},
		{"no collector", base + "tracing:\n  sampling: 0.5\n", nil, "g.yaml:6: tracing.collector: required (host:port)"},
		{"bad collector", base + "tracing:\n  collector: otel\n", nil, "g.yaml:7: tracing.collector: must be host:port"},
		{"sampling over 1", base + "tracing:\n  collector: 127.0.0.1:4317\n  sampling: 1.5\n", nil, "g.yaml:8: tracing.sampling: must be 0..1, got 1.5"},
		{"sampling negative", base + "tracing:\n  collector: 127.0.0.1:4317\n  sampling: -0.1\n", nil, "g.yaml:8: tracing.sampling: must be 0..1"},
		{"sampling NaN", base + "tracing:\n  collector: 127.0.0.1:4317\n  sampling: .nan\n", nil, "g.yaml:8: tracing.sampling: must be 0..1"},
		{"sampling a percent string", base + "tracing:\n  collector: 127.0.0.1:4317\n  sampling: 1%\n", nil, "g.yaml:8: cannot unmarshal"},
		{"service name with a newline", base + "tracing:\n  collector: 127.0.0.1:4317\n  service_name: \"a\\nb\"\n", nil, "g.yaml:8: tracing.service_name: must be at most 128 printable characters"},
		{"unknown field", base + "tracing:\n  endpoint: 127.0.0.1:4317\n", nil, "g.yaml:7: field endpoint not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "/etc/helix/g.yaml")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				if !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("error %v does not wrap ErrInvalidConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := c.Gateway().Tracing
			if (got == nil) != (tt.want == nil) {
				t.Fatalf("tracing %+v, want %+v", got, tt.want)
			}
			if got == nil {
				return
			}
			if got.Sampling != tt.want.Sampling || got.ServiceName != tt.want.ServiceName ||
				got.Collector.Address != tt.want.Collector.Address || got.Collector.Port != tt.want.Collector.Port ||
				(got.Collector.TLS == nil) != (tt.want.Collector.TLS == nil) ||
				(got.Collector.TLS != nil && *got.Collector.TLS != *tt.want.Collector.TLS) {
				t.Fatalf("tracing %+v (tls %+v), want %+v (tls %+v)", got, got.Collector.TLS, tt.want, tt.want.Collector.TLS)
			}
		})
	}
}

// The example file's tracing section: TLS to a collector by name.
func TestLoadExampleTracing(t *testing.T) {
	c, err := Load("testdata/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Gateway().Tracing
	dir, _ := filepath.Abs("testdata")
	if tr == nil || tr.Sampling != 0.01 || tr.ServiceName != "helix-gateway" || tr.Collector.Port != 4317 ||
		tr.Collector.TLS == nil || tr.Collector.TLS.CAFile != filepath.Join(dir, "pki/ca.crt") ||
		tr.Collector.TLS.ServerName != "otel-collector.helixflow.example" {
		t.Fatalf("tracing = %+v", tr)
	}
}

// Tracing is hot-reloaded like the rest: turning it on, changing the
// sampling and turning it off each reach the watcher; a bad sampling is
// reported and the last good config stays.
func TestWatchTracing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	writeAtomic(t, path, base)
	changes := make(chan *Config, 10)
	errs := make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- WatchEvery(ctx, path, 10*time.Millisecond, func(c *Config) { changes <- c }, func(err error) { errs <- err })
	}()
	t.Cleanup(func() { cancel(); <-done })
	next := func() *ir.Tracing {
		t.Helper()
		for {
			select {
			case c := <-changes:
				return c.Gateway().Tracing
			case err := <-errs:
				t.Fatalf("unexpected error: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("no change reported")
			}
		}
	}
	if tr := next(); tr != nil { // the first file
		t.Fatalf("tracing in the first file: %+v", tr)
	}
	writeAtomic(t, path, base+"tracing:\n  collector: 127.0.0.1:4317\n  sampling: 1\n")
	if tr := next(); tr == nil || tr.Sampling != 1 {
		t.Fatalf("tracing on: %+v", tr)
	}
	writeAtomic(t, path, base+"tracing:\n  collector: 127.0.0.1:4317\n  sampling: 2\n")
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "tracing.sampling") {
			t.Fatalf("error %v does not name tracing.sampling", err)
		}
	case c := <-changes:
		t.Fatalf("a bad sampling was handed over: %+v", c.Gateway().Tracing)
	case <-time.After(5 * time.Second):
		t.Fatal("bad file not reported")
	}
	writeAtomic(t, path, base+"tracing:\n  collector: 127.0.0.1:4317\n  sampling: 0.25\n")
	if tr := next(); tr == nil || tr.Sampling != 0.25 {
		t.Fatalf("sampling change: %+v", tr)
	}
	writeAtomic(t, path, base)
	if tr := next(); tr != nil {
		t.Fatalf("tracing off: %+v", tr)
	}
}
