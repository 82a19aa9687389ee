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
