package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/pgtest"
)

// testGatewayConfig is a gateway config file with rate limits, plans free
// (the default) and gold.
const testGatewayConfig = `listener: {address: 127.0.0.1, port: 8443}
authz: {address: '127.0.0.1:9001'}
ratelimit: {default_plan: free}
plans:
  free: {requests_per_second: 5}
  gold: {requests_per_second: 100}
`

// noLimitsGatewayConfig has no plans: no rate limits, so no Redis.
const noLimitsGatewayConfig = `listener: {address: 127.0.0.1, port: 8443}
authz: {address: '127.0.0.1:9001'}
`

func writeGatewayConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAdminPlansFollowGatewayConfig: the admin API gives clients only the
// plans of the gateway config file, follows the file as it changes, keeps
// the last good plans when it turns bad, and does not start without it.
func TestAdminPlansFollowGatewayConfig(t *testing.T) {
	dsn := pgtest.StartServer(t).DSN()
	r := startReplica(t, dsn)
	path := r.srv.gatewayFile
	create := func(plan string) (int, map[string]any) {
		t.Helper()
		req := map[string]any{"scopes": []string{"models:infer"}}
		if plan != "" {
			req["plan"] = plan
		}
		var out map[string]any
		return r.adminCall(t, "POST", "/admin/v1/clients", req, &out), out
	}

	if st, out := create("platinum"); st != http.StatusBadRequest ||
		!strings.Contains(out["error"].(string), `plan: "platinum" is not a plan of the gateway (plans: free, gold)`) {
		t.Errorf("unknown plan: %d %v", st, out)
	}
	if st, out := create(""); st != http.StatusCreated || out["plan"] != "free" || len(out["models"].([]any)) != 0 {
		t.Errorf("defaults: %d %v, want the default plan free and no model", st, out)
	}

	// The file changes: platinum is added and becomes the default.
	edited := strings.Replace(testGatewayConfig, "default_plan: free", "default_plan: platinum", 1) + "  platinum: {requests_per_second: 1000}\n"
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { st, _ := create("platinum"); return st == http.StatusCreated })
	if st, out := create(""); st != http.StatusCreated || out["plan"] != "platinum" {
		t.Errorf("defaults after the edit: %d %v, want platinum", st, out)
	}

	// A bad file (a default plan it lacks) is refused: the plans stay.
	if err := os.WriteFile(path, []byte(strings.Replace(edited, "default_plan: platinum", "default_plan: gone", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // more than config.WatchInterval
	if st, out := create("platinum"); st != http.StatusCreated {
		t.Errorf("after a bad edit: %d %v, want the last good plans", st, out)
	}

	// No file, no admin API.
	for _, file := range []string{"", filepath.Join(t.TempDir(), "none.yaml")} {
		_, err := New(context.Background(), Config{
			DatabaseURL: dsn, KEK: bytes.Repeat([]byte{9}, 32), AdminToken: adminToken, GatewayConfig: file,
			Issuer: "http://127.0.0.1", Audience: "helixflow", TokenLifetime: time.Minute, Logger: slog.New(slog.DiscardHandler),
		})
		if err == nil || !strings.Contains(err.Error(), "gateway config") {
			t.Errorf("GatewayConfig %q: err = %v, want one naming the gateway config", file, err)
		}
	}
}
