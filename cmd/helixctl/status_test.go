package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/xds/server"
)

// TestStatus reads the real helix-xds status handler (no Envoy connected).
func TestStatus(t *testing.T) {
	ads, err := server.New(t.Context(), server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ads.StatusHandler())
	t.Cleanup(srv.Close)
	// The handler is mounted at /status by helix-xds; here it answers every path.
	url := srv.URL

	var out bytes.Buffer
	if err := run(t.Context(), []string{"status", "--xds-status-url", url, "--output", "json"}, &out); err != nil {
		t.Fatal(err)
	}
	var st server.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("json output %q: %v", out.String(), err)
	}
	if st.NACKs != 0 || len(st.Nodes) != 0 {
		t.Fatalf("status %+v", st)
	}
	out.Reset()
	if err := run(t.Context(), []string{"status", "--xds-status-url", url}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "rejected configs (NACKs) since start: 0") {
		t.Fatalf("table output:\n%s", out.String())
	}

	if err := run(t.Context(), []string{"status", "--xds-status-url", url, "--output", "yaml"}, &out); !errors.Is(err, errUsage) {
		t.Fatalf("--output yaml: %v", err)
	}
	if err := run(t.Context(), []string{"status", "--xds-status-url", "http://127.0.0.1:1"}, &out); err == nil || !strings.Contains(err.Error(), "helix-xds status") {
		t.Fatalf("unreachable helix-xds: %v", err)
	}
}

// TestStatusTraffic: the traffic policies of /status, as a table and as
// JSON.
func TestStatusTraffic(t *testing.T) {
	ads, err := server.New(t.Context(), server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ads.StatusHandler())
	t.Cleanup(srv.Close)
	tests := []struct {
		name     string
		policies []server.TrafficPolicy
		want     []string
	}{
		{"none", nil, []string{"traffic policies: none"}},
		{"active and inactive", []server.TrafficPolicy{
			{Model: "simple", Source: server.TrafficSourceConfig, Active: true, Sticky: true,
				Variants: []server.TrafficVariant{{Name: "stable", Version: "1", Weight: 90}, {Name: "canary", Version: "2", Pool: "canary", Weight: 10}},
				Shadow:   &server.TrafficShadow{Name: "mirror", Pool: "shadow", Percent: 12.5}},
			{Model: "mlp", Source: server.TrafficSourceRollout, InactiveReason: "no_endpoints", Detail: `variant "canary" (version 3, any pool) matches no ready endpoint`,
				Variants: []server.TrafficVariant{{Name: "stable", Version: "2", Weight: 99}, {Name: "canary", Version: "3", Weight: 1}}},
		}, []string{
			"TRAFFIC MODEL", "SOURCE", "STATE",
			"simple", "config", "active", "stable 90% (version 1), canary 10% (version 2, pool canary)", "mirror 12.5% (pool shadow)",
			"mlp", "rollout", `inactive (no_endpoints): variant "canary" (version 3, any pool) matches no ready endpoint`, "stable 99% (version 2), canary 1% (version 3)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ads.SetTrafficStatus(func() []server.TrafficPolicy { return tc.policies })
			var out bytes.Buffer
			if err := run(t.Context(), []string{"status", "--xds-status-url", srv.URL}, &out); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("table output lacks %q:\n%s", w, out.String())
				}
			}
			out.Reset()
			if err := run(t.Context(), []string{"status", "--xds-status-url", srv.URL, "--output", "json"}, &out); err != nil {
				t.Fatal(err)
			}
			var st server.Status
			if err := json.Unmarshal(out.Bytes(), &st); err != nil {
				t.Fatal(err)
			}
			if len(st.Traffic) != len(tc.policies) {
				t.Errorf("json traffic = %+v, want %d policies", st.Traffic, len(tc.policies))
			}
		})
	}
}
