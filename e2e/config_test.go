package e2e

import (
	"fmt"
	"os"
	"path/filepath"
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
	// publicPort, when set, is helix-authz's public port, which Envoy
	// then serves (authz.public: the portal, /api/v1, /oauth2).
	publicPort int
	// workersTLS: Envoy reaches the workers over mTLS with envoyClient,
	// checking their certificates for the name helix-worker.
	workersTLS bool
	// listenerWatchDir: Envoy reloads the listener's pair when a file is
	// moved into it (a Kubernetes-style symlink swap; see secretDir).
	listenerWatchDir string
	// corsOrigin, when set, turns CORS on for this origin.
	corsOrigin string
	// rateLimits turns the plans' limits on (helix-authz counts them in
	// the stack's Redis); failClosed refuses requests while Redis cannot
	// answer.
	rateLimits bool
	failClosed bool
}

// writeGatewayConfig writes helix-xds's config: TLS on the listener, mTLS
// to helix-authz and (when workersTLS) the workers, (when rateLimits) the
// plans' limits, and the plans: free (5/s per client per model, and
// clients without a plan) and standard (high enough that load tests never
// meet it).
func writeGatewayConfig(t *testing.T, path string, c gatewayConfig) {
	t.Helper()
	if err := os.WriteFile(path, gatewayYAML(c), 0o600); err != nil {
		t.Fatal(err)
	}
}

// gatewayYAML is the config writeGatewayConfig writes.
func gatewayYAML(c gatewayConfig) []byte {
	y := fmt.Sprintf(`listener:
  address: 127.0.0.1
  port: %d
  tls:
    cert_file: %s
    key_file: %s
`, c.listen, c.listenerCert.CertFile, c.listenerCert.KeyFile)
	if c.listenerWatchDir != "" {
		y += fmt.Sprintf("    watch_dir: %s\n", c.listenerWatchDir)
	}
	y += fmt.Sprintf(`authz:
  address: 127.0.0.1:%d
  timeout: 2s
  tls:
    ca_file: %s
    cert_file: %s
    key_file: %s
    server_name: helix-authz
%splans:
  free:
    requests_per_second: 5
  standard:
    requests_per_second: 100000
health_check:
  interval: 1s
  no_traffic_interval: 1s
`, c.authzPort, c.ca, c.envoyClient.CertFile, c.envoyClient.KeyFile, publicYAML(c))
	if c.rateLimits {
		y += fmt.Sprintf(`ratelimit:
  timeout: 500ms
  failure_mode: %s
  default_plan: free
`, failureMode(c.failClosed))
	}
	if c.workersTLS {
		y += fmt.Sprintf(`workers_tls:
  ca_file: %s
  cert_file: %s
  key_file: %s
  server_name: helix-worker
`, c.ca, c.envoyClient.CertFile, c.envoyClient.KeyFile)
	}
	if c.corsOrigin != "" {
		y += fmt.Sprintf("cors:\n  allow_origins: [%q]\n", c.corsOrigin)
	}
	return []byte(y)
}

// publicYAML is authz.public, or nothing without a public port.
func publicYAML(c gatewayConfig) string {
	if c.publicPort == 0 {
		return ""
	}
	return fmt.Sprintf("  public:\n    address: 127.0.0.1:%d\n    tls: {ca_file: %s, server_name: helix-authz}\n", c.publicPort, c.ca)
}

func failureMode(closed bool) string {
	if closed {
		return "closed"
	}
	return "open"
}

// secretDir holds a certificate pair the way a Kubernetes secret volume
// does: tls.crt and tls.key are links into ..data, itself a link to the
// current version's folder, swapped by one rename. Envoy, watching the
// folder, sees the move and reloads both files at once.
type secretDir struct {
	dir     string
	version int
}

func newSecretDir(t *testing.T, parent string, p envoytest.Pair) *secretDir {
	t.Helper()
	d := &secretDir{dir: filepath.Join(parent, "gateway-tls")}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d.rotate(t, p)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(d.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// pair is what the gateway config names.
func (d *secretDir) pair() envoytest.Pair {
	return envoytest.Pair{CertFile: filepath.Join(d.dir, "tls.crt"), KeyFile: filepath.Join(d.dir, "tls.key")}
}

// rotate makes p the current pair: copied into a new version folder, then
// ..data swapped to it atomically.
func (d *secretDir) rotate(t *testing.T, p envoytest.Pair) {
	t.Helper()
	d.version++
	v := fmt.Sprintf("..v%d", d.version)
	if err := os.Mkdir(filepath.Join(d.dir, v), 0o700); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{p.CertFile: "tls.crt", p.KeyFile: "tls.key"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.dir, v, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(v, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}
