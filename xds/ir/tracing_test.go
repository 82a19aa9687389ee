package ir

import (
	"math"
	"strings"
	"testing"
)

func TestValidateTracing(t *testing.T) {
	loopback := func() *Tracing {
		return &Tracing{Collector: Upstream{Address: "127.0.0.1", Port: 4317}, Sampling: DefaultTracingSampling, ServiceName: DefaultTracingServiceName}
	}
	tests := []struct {
		name string
		edit func(*Tracing)
		err  string // "": valid
	}{
		{"loopback plaintext", func(*Tracing) {}, ""},
		{"localhost plaintext", func(tr *Tracing) { tr.Collector.Address = "localhost" }, ""},
		{"sampling 0 and 1", func(tr *Tracing) { tr.Sampling = 0 }, ""},
		{"tls, client certificate", func(tr *Tracing) {
			tr.Collector = Upstream{Address: "otel.example.com", Port: 4317, TLS: tlsFiles()}
		}, ""},
		{"tls, server only", func(tr *Tracing) {
			tr.Collector = Upstream{Address: "10.0.0.9", Port: 4317, TLS: &UpstreamTLS{CAFile: "/pki/ca.crt", ServerName: "otel"}}
		}, ""},
		{"remote plaintext", func(tr *Tracing) { tr.Collector.Address = "10.0.0.9" }, "tracing.collector.tls: required unless the collector is on loopback"},
		{"no server name", func(tr *Tracing) { tr.Collector.TLS = &UpstreamTLS{CAFile: "/pki/ca.crt"} }, "tracing.collector.tls.server_name: required with TLS"},
		{"relative ca", func(tr *Tracing) { tr.Collector.TLS = &UpstreamTLS{CAFile: "ca.crt", ServerName: "otel"} }, "tracing.collector.tls.ca_file: must be an absolute path"},
		{"key without cert", func(tr *Tracing) {
			tr.Collector.TLS = &UpstreamTLS{CAFile: "/pki/ca.crt", KeyFile: "/pki/c.key", ServerName: "otel"}
		}, "tracing.collector.tls.cert_file: required with key_file"},
		{"replicas", func(tr *Tracing) { tr.Collector.Replicas = []Replica{{Address: "127.0.0.2", Port: 4317}} }, "tracing.collector.replicas: not supported"},
		{"no port", func(tr *Tracing) { tr.Collector.Port = 0 }, "tracing.collector.port: must be 1..65535"},
		{"sampling over 1", func(tr *Tracing) { tr.Sampling = 1.01 }, "tracing.sampling: must be 0..1"},
		{"sampling NaN", func(tr *Tracing) { tr.Sampling = math.NaN() }, "tracing.sampling: must be 0..1"},
		{"sampling +Inf", func(tr *Tracing) { tr.Sampling = math.Inf(1) }, "tracing.sampling: must be 0..1"},
		{"no service name", func(tr *Tracing) { tr.ServiceName = "" }, "tracing.service_name: required"},
		{"long service name", func(tr *Tracing) { tr.ServiceName = strings.Repeat("a", 129) }, "tracing.service_name: must be at most 128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := validGateway()
			g.Tracing = loopback()
			tt.edit(g.Tracing)
			err := g.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want %q", err, tt.err)
			}
		})
	}
}

// ApplyDefaults names the service but leaves sampling alone: 0 means no
// request is sampled, and the config file applies its own default.
func TestApplyDefaultsTracing(t *testing.T) {
	g := &Gateway{Tracing: &Tracing{}}
	g.ApplyDefaults()
	if g.Tracing.ServiceName != DefaultTracingServiceName || g.Tracing.Sampling != 0 {
		t.Fatalf("tracing after defaults = %+v", g.Tracing)
	}
}
