package translate

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/xds/ir"
)

// The real Envoy with helix-authz unreachable: ext_authz's 503 carries
// helix-authz's own JSON body, no-store and Retry-After for a REST client
// (api/inference.yaml's Unavailable answer; it had no body at all, found by
// schemathesis), while a gRPC caller still gets grpc-status UNAVAILABLE.
func TestEnvoyAuthzUnreachable(t *testing.T) {
	envoytest.Binary(t)
	port := freeTCPPort(t)
	g := &ir.Gateway{
		Listener: ir.Listener{Address: "127.0.0.1", Port: port},
		// Nothing listens there.
		AuthZ: ir.AuthZ{Upstream: ir.Upstream{Address: "127.0.0.1", Port: freeTCPPort(t)}},
	}
	g.ApplyDefaults()
	r, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	// The backend is never reached; any closed port will do.
	if err := os.WriteFile(path, sourceLimitBootstrap(t, r, freeTCPPort(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	envoytest.Start(t, path)
	url := fmt.Sprintf("http://127.0.0.1:%d/v2/models/simple", port)

	do := func(contentType string) (*http.Response, string) {
		t.Helper()
		c := &http.Client{Timeout: 5 * time.Second}
		deadline := time.Now().Add(15 * time.Second)
		for {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			if contentType != "" {
				req.Header.Set("Content-Type", contentType)
			}
			resp, err := c.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp, string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("Envoy's listener did not come up: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	for _, ct := range []string{"", "application/json"} {
		resp, body := do(ct)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("content-type %q: status %d (%s), want 503", ct, resp.StatusCode, body)
		}
		if body != authzUnavailableBody {
			t.Errorf("content-type %q: body %q, want %q", ct, body, authzUnavailableBody)
		}
		for k, want := range map[string]string{"Content-Type": "application/json", "Retry-After": "1", "Cache-Control": "no-store"} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("content-type %q: %s %q, want %q", ct, k, got, want)
			}
		}
	}

	resp, body := do("application/grpc")
	if got := resp.Header.Get("Grpc-Status"); got != "14" {
		t.Errorf("gRPC caller: grpc-status %q (HTTP %d, %v, %q), want 14 (UNAVAILABLE)", got, resp.StatusCode, resp.Header, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/grpc" {
		t.Errorf("gRPC caller: content-type %q", ct)
	}
}
