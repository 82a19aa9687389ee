package stack

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/pki"
)

func TestPortsDefaultsForcedAndFree(t *testing.T) {
	// Hold GATEWAY's default, so that it must be replaced by a free one.
	l, err := net.Listen("tcp", "127.0.0.1:8443")
	if err == nil {
		defer l.Close()
	}
	env := map[string]string{"HELIX_XDS_PORT": "28999"}
	var p Ports
	p.Workers = make([]WorkerPorts, 2)
	if err := p.pick(true, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if p.XDS != 28999 {
		t.Errorf("XDS = %d, want the forced 28999", p.XDS)
	}
	if l != nil && p.Gateway == 8443 {
		t.Error("GATEWAY took its default while it was in use")
	}
	seen := map[int]string{}
	for _, e := range p.table() {
		if *e.p == 0 {
			t.Errorf("%s has no port", e.name)
		}
		if other, dup := seen[*e.p]; dup {
			t.Errorf("%s and %s share port %d", e.name, other, *e.p)
		}
		seen[*e.p] = e.name
	}
	if n := len(p.table()); n != 23 {
		t.Errorf("%d ports, want 23 (make run's)", n)
	}
}

func TestPortsRefuseBadOverrides(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HELIX_PG_PORT": "five"}, `HELIX_PG_PORT="five" is not a port`},
		{map[string]string{"HELIX_PG_PORT": "70000"}, `is not a port`},
		{map[string]string{"HELIX_XDS_PORT": "28999", "HELIX_REDIS_PORT": "28999"}, "HELIX_REDIS_PORT=28999 is XDS's port too"},
	} {
		var p Ports
		err := p.pick(false, func(k string) string { return tc.env[k] })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.env, err, tc.want)
		}
	}
}

func TestFillPlaceholders(t *testing.T) {
	out, err := fillPlaceholders("t", []byte("port: ${A}\naddr: 127.0.0.1:${B}\n"), map[string]string{"A": "1", "B": "2"})
	if err != nil || string(out) != "port: 1\naddr: 127.0.0.1:2\n" {
		t.Fatalf("got %q, %v", out, err)
	}
	if _, err := fillPlaceholders("deploy/local/gateway.yaml", []byte("x: ${C}"), nil); err == nil || !strings.Contains(err.Error(), "${C}") {
		t.Fatalf("an unfilled placeholder: %v", err)
	}
}

func TestLocalEnvIsShellSyntax(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{Root: ".", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.AdminToken = "tok"
	secret := `it's $HOME "x" \ ?&`
	if err := s.WriteLocalEnv(Demo{ID: "hxc_1", Secret: secret}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "local.env")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("local.env: %v, %v", fi, err)
	}
	out, err := exec.Command("sh", "-c", `. "$1" && printf '%s\n%s\n%s' "$HELIX_CLIENT_SECRET" "$HELIX_DATABASE_URL" "$HELIX_GRPC_ADDR"`, "sh", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := secret + "\n" + s.DatabaseURL + "\n" + s.GatewayAddr()
	if string(out) != want {
		t.Fatalf("sourced back:\n%s\nwant:\n%s", out, want)
	}
}

// TestAuthzCountsInTheStacksRedis: helix-authz takes the rate-limit
// decision with its counters in the stack's Redis, so Redis starts before
// it, and every instance (replicas too) is given its address.
func TestAuthzCountsInTheStacksRedis(t *testing.T) {
	s, err := New(Options{Root: ".", Dir: t.TempDir(), AuthzReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, f := range s.description() {
		name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name() // pkg.(*Stack).redis-fm
		order = append(order, strings.TrimSuffix(name[strings.LastIndex(name, ".")+1:], "-fm"))
	}
	if r, a := slices.Index(order, "redis"), slices.Index(order, "authz"); r < 0 || a < 0 || r > a {
		t.Fatalf("start order %v: want redis before authz", order)
	}
	if err := s.issue(context.Background(), pki.LocalSpecs()); err != nil {
		t.Fatal(err)
	}
	specs, err := s.authz()
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 {
		t.Fatalf("%d helix-authz instances, want 2", len(specs))
	}
	for _, spec := range specs {
		if want := "--redis-address=" + Addr(s.Ports.Redis); !slices.Contains(spec.Args, want) {
			t.Errorf("%s: %v lacks %s", spec.Name, spec.Args, want)
		}
	}
}

// TestAuthzMailsToTheStacksMailpit: mailpit starts before helix-authz,
// and every instance sends its mails there (plain SMTP on loopback) with
// links to its own public port.
func TestAuthzMailsToTheStacksMailpit(t *testing.T) {
	s, err := New(Options{Root: ".", Dir: t.TempDir(), AuthzReplicas: 1, MailpitBin: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, f := range s.description() {
		name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
		order = append(order, strings.TrimSuffix(name[strings.LastIndex(name, ".")+1:], "-fm"))
	}
	if m, a := slices.Index(order, "mailpit"), slices.Index(order, "authz"); m < 0 || a < 0 || m > a {
		t.Fatalf("start order %v: want mailpit before authz", order)
	}
	mp, err := s.mailpit()
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:" + strconv.Itoa(s.Ports.MailpitSMTP); !slices.Contains(mp[0].Args, want) {
		t.Errorf("mailpit %v does not listen on %s", mp[0].Args, want)
	}
	if err := s.issue(context.Background(), pki.LocalSpecs()); err != nil {
		t.Fatal(err)
	}
	specs, err := s.authz()
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range specs {
		for _, want := range []string{"--smtp-address=" + Addr(s.Ports.MailpitSMTP), "--smtp-tls=none",
			"--mail-from=" + MailFrom, "--public-url=" + s.GatewayURL(), "--trusted-proxies=" + EnvoyProxies} {
			if !slices.Contains(spec.Args, want) {
				t.Errorf("%s: %v lacks %s", spec.Name, spec.Args, want)
			}
		}
	}
}

// TestAuthzReadsTheCatalogueFromXDS: every helix-authz instance is told
// where helix-xds is and presents authz-xds-client, a certificate the
// stack's PKI issues with helix-authz's identity (the one helix-xds's
// Catalog admits).
func TestAuthzReadsTheCatalogueFromXDS(t *testing.T) {
	s, err := New(Options{Root: ".", Dir: t.TempDir(), AuthzReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.issue(context.Background(), pki.LocalSpecs()); err != nil {
		t.Fatal(err)
	}
	specs, err := s.authz()
	if err != nil {
		t.Fatal(err)
	}
	cert, key := s.Cert(pki.AuthzXDSClient)
	for _, spec := range specs {
		for _, want := range []string{"--xds-address=" + Addr(s.Ports.XDS), "--xds-ca-file=" + s.CAFile(),
			"--xds-cert-file=" + cert, "--xds-key-file=" + key} {
			if !slices.Contains(spec.Args, want) {
				t.Errorf("%s: %v lacks %s", spec.Name, spec.Args, want)
			}
		}
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := identity.FromCert(pair.Leaf); err != nil || id != identity.Authz || !slices.Contains(identity.CatalogReaders(), id) {
		t.Fatalf("authz-xds-client's identity %q (%v): want %s, a catalogue reader", id, err, identity.Authz)
	}
}
