package config

import (
	"strings"
	"testing"

	"github.com/helixflow/helixflow/xds/ir"
)

// The per-source limit is on by default, with ir's defaults; it can be
// tuned or turned off, and bad values name their field and line.
func TestSourceLimit(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want *ir.SourceLimit // nil: off
		err  string
	}{
		{"default on", base, &ir.SourceLimit{RequestsPerSecond: ir.DefaultSourceRate, Burst: 2 * ir.DefaultSourceRate, MaxSources: ir.DefaultSourceMaxSources}, ""},
		{"rate only", base + "source_limit:\n  requests_per_second: 50\n", &ir.SourceLimit{RequestsPerSecond: 50, Burst: 100, MaxSources: ir.DefaultSourceMaxSources}, ""},
		{"all set", base + "source_limit: {requests_per_second: 5, burst: 7, max_sources: 9}\n", &ir.SourceLimit{RequestsPerSecond: 5, Burst: 7, MaxSources: 9}, ""},
		{"off", base + "source_limit:\n  disabled: true\n", nil, ""},
		{"burst under rate", base + "source_limit:\n  requests_per_second: 10\n  burst: 5\n", nil, "g.yaml:8: source_limit.burst: must be requests_per_second (10)..2000000, got 5"},
		{"rate too high", base + "source_limit:\n  requests_per_second: 2000000\n", nil, "g.yaml:7: source_limit.requests_per_second: must be 1..1000000"},
		{"unknown field", base + "source_limit:\n  rps: 5\n", nil, "g.yaml:7: field rps not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "/etc/helix/g.yaml")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := c.Gateway().SourceLimit
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Fatalf("source limit %+v, want %+v", got, tt.want)
			}
		})
	}
}
