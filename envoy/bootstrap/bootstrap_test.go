package bootstrap

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/envoy/envoytest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func mtls() Config {
	return Config{
		NodeID: "envoy-0", NodeCluster: "helix",
		XDSAddress:   "10.0.0.7:18000",
		XDSTLS:       &TLS{CAFile: "/etc/helix/ca.pem", CertFile: "/etc/helix/envoy.pem", KeyFile: "/etc/helix/envoy-key.pem", ServerName: "helix-xds"},
		AdminAddress: "127.0.0.1:9901",
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"mtls", mtls()},
		{"plaintext-loopback", Config{NodeID: "dev", NodeCluster: "helix", XDSAddress: "127.0.0.1:18000", AdminAddress: "127.0.0.1:0"}},
		{"delta-dns", func() Config {
			c := mtls()
			c.XDSAddress, c.Delta, c.MaxConnections, c.XDSTLS.ServerName = "helix-xds.helix.svc:18000", true, 1000, "helix-xds.helix.svc"
			return c
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.name+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./envoy/bootstrap -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs from the rendered bootstrap (run with -update if intended):\n%s", path, got)
			}
		})
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		field  string
	}{
		{"no node id", func(c *Config) { c.NodeID = "" }, "node id"},
		{"no node cluster", func(c *Config) { c.NodeCluster = "" }, "node cluster"},
		{"xds address without port", func(c *Config) { c.XDSAddress = "10.0.0.7" }, "xds address"},
		{"xds bad port", func(c *Config) { c.XDSAddress = "10.0.0.7:99999" }, "xds address"},
		{"plaintext off loopback", func(c *Config) { c.XDSTLS = nil }, "TLS is required"},
		{"tls without key", func(c *Config) { c.XDSTLS.KeyFile = "" }, "xds tls key file"},
		// Without it Envoy would take any certificate the CA signed as
		// helix-xds's.
		{"tls without server name", func(c *Config) { c.XDSTLS.ServerName = "" }, "xds tls server name"},
		{"admin on all interfaces", func(c *Config) { c.AdminAddress = "0.0.0.0:9901" }, "admin address"},
		{"admin on a name", func(c *Config) { c.AdminAddress = "localhost:9901" }, "admin address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mtls()
			tt.mutate(&c)
			_, err := Render(c)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Render = %v, want ErrInvalid naming %q", err, tt.field)
			}
		})
	}
}

// Envoy itself accepts what Render writes.
func TestEnvoyValidates(t *testing.T) {
	bin := envoytest.Binary(t)
	ca := envoytest.NewCA(t)
	client := ca.Issue(t, "envoy", "envoy-0")
	for _, delta := range []bool{false, true} {
		c := mtls()
		c.Delta = delta
		c.XDSTLS = &TLS{CAFile: ca.CertFile, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "helix-xds"}
		b, err := Render(c)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "bootstrap.yaml")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--mode", "validate", "-c", path, "--disable-hot-restart").CombinedOutput()
		if err != nil {
			t.Fatalf("envoy --mode validate (delta=%v): %v\n%s", delta, err, out)
		}
	}
}
