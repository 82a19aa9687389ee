package stack

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/xds/config"
)

// The local gateway config routes helix-authz's public surface through
// Envoy: authz.public names every instance's public port, with TLS
// checked against the development CA, and the file is valid as helix-xds
// reads it.
func TestLocalGatewayConfigServesThePublicPort(t *testing.T) {
	s, err := New(Options{Root: "../..", Dir: t.TempDir(), AuthzReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.localGatewayConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(b, s.ConfigPath())
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	p := c.Gateway().AuthZ.Public
	if p == nil {
		t.Fatalf("no authz.public in\n%s", b)
	}
	if p.Address != "127.0.0.1" || int(p.Port) != s.Ports.Authz || len(p.Replicas) != 1 || int(p.Replicas[0].Port) != s.Ports.AuthzReplicas[0].Authz {
		t.Errorf("public = %+v, want 127.0.0.1:%d and the replica's %d", p, s.Ports.Authz, s.Ports.AuthzReplicas[0].Authz)
	}
	if p.TLS == nil || p.TLS.CAFile != s.CAFile() || p.TLS.ServerName != "helix-authz" {
		t.Errorf("public tls = %+v, want the stack's CA and helix-authz", p.TLS)
	}
}

func TestPortalURL(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Root: ".", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if want := s.GatewayURL() + "/portal/"; s.PortalURL() != want {
		t.Fatalf("PortalURL = %q, want %q", s.PortalURL(), want)
	}
	if err := s.WriteLocalEnv(Demo{ID: "hxc_1", Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", `. "$1" && printf '%s' "$HELIX_PORTAL_URL"`, "sh", filepath.Join(dir, "local.env")).Output()
	if err != nil || strings.TrimSpace(string(out)) != s.PortalURL() {
		t.Fatalf("HELIX_PORTAL_URL = %q (%v), want %q", out, err, s.PortalURL())
	}
}
