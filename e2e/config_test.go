package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/helixflow/helixflow/envoy/envoytest"
)

// gatewayConfig is what the e2e gateway config needs to say.
type gatewayConfig struct {
	listen       int
	listenerCert envoytest.Pair
	authzPort    int
	ca           string
	envoyClient  envoytest.Pair
	// corsOrigin, when set, turns CORS on for this origin.
	corsOrigin string
	// helix-ratelimit's port and Envoy's client certificate for it;
	// failClosed refuses requests when it cannot answer.
	ratelimitPort int
	failClosed    bool
}

// writeGatewayConfig writes helix-xds's config: TLS on the listener, mTLS
// to helix-authz and helix-ratelimit, workers in plaintext on loopback, and
// the plans of the local stack (free: 5/s, standard: 1000/s, per client
// per model; clients without a plan are on free).
func writeGatewayConfig(t *testing.T, path string, c gatewayConfig) {
	t.Helper()
	y := fmt.Sprintf(`listener:
  address: 127.0.0.1
  port: %d
  tls:
    cert_file: %s
    key_file: %s
authz:
  address: 127.0.0.1:%d
  timeout: 2s
  tls:
    ca_file: %s
    cert_file: %s
    key_file: %s
ratelimit:
  address: 127.0.0.1:%d
  timeout: 500ms
  failure_mode: %s
  default_plan: free
  tls:
    ca_file: %s
    cert_file: %s
    key_file: %s
    server_name: helix-ratelimit
plans:
  free:
    requests_per_second: 5
  standard:
    requests_per_second: 1000
health_check:
  interval: 1s
  no_traffic_interval: 1s
`, c.listen, c.listenerCert.CertFile, c.listenerCert.KeyFile, c.authzPort, c.ca, c.envoyClient.CertFile, c.envoyClient.KeyFile,
		c.ratelimitPort, failureMode(c.failClosed), c.ca, c.envoyClient.CertFile, c.envoyClient.KeyFile)
	if c.corsOrigin != "" {
		y += fmt.Sprintf("cors:\n  allow_origins: [%q]\n", c.corsOrigin)
	}
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
}

func failureMode(closed bool) string {
	if closed {
		return "closed"
	}
	return "open"
}
