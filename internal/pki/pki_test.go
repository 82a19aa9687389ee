package pki_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/pki"
)

func initLocal(t *testing.T, opts pki.Options) map[string]pki.Result {
	t.Helper()
	res, err := pki.Init(context.Background(), opts, pki.LocalSpecs())
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	out := map[string]pki.Result{}
	for _, r := range res {
		out[r.Name] = r
	}
	if len(out) != len(pki.LocalSpecs())+1 {
		t.Fatalf("Init returned %d results, want %d", len(out), len(pki.LocalSpecs())+1)
	}
	return out
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, ".crt")+".key")
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf
}

func TestInitLocal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	res := initLocal(t, pki.Options{Dir: dir})
	for name, r := range res {
		if r.Action != pki.Created {
			t.Errorf("%s: action %s, want created", name, r.Action)
		}
	}

	// Permissions: private directory, private keys, public certificates.
	modes := map[string]os.FileMode{dir: 0o700}
	for _, r := range res {
		modes[r.KeyFile], modes[r.CertFile] = 0o600, 0o644
	}
	for path, want := range modes {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}

	ca := readCert(t, res[pki.CAName].CertFile)
	if !ca.IsCA || !ca.MaxPathLenZero || ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA: IsCA %v MaxPathLenZero %v KeyUsage %v", ca.IsCA, ca.MaxPathLenZero, ca.KeyUsage)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if got := ca.NotAfter.Sub(ca.NotBefore); got < pki.DefaultCALifetime {
		t.Errorf("CA lifetime %s, want >= %s", got, pki.DefaultCALifetime)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	for _, s := range pki.LocalSpecs() {
		t.Run(s.Name, func(t *testing.T) {
			c := readCert(t, res[s.Name].CertFile)
			if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
				t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
			}
			if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("IsCA %v KeyUsage %v, want a leaf with digitalSignature only", c.IsCA, c.KeyUsage)
			}
			if lt := c.NotAfter.Sub(c.NotBefore); lt > pki.DefaultLifetime+10*time.Minute || lt < pki.DefaultLifetime {
				t.Errorf("lifetime %s, want about %s", lt, pki.DefaultLifetime)
			}
			if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://helixflow.local/"+s.CommonName {
				t.Errorf("URIs %v", c.URIs)
			}
			usage, wrong := x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth
			if s.Usage == pki.ClientAuth {
				usage, wrong = wrong, usage
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("chain does not verify for %v: %v", usage, err)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{wrong}}); err == nil {
				t.Errorf("verifies for %v too; want one usage only", wrong)
			}
			if s.Usage != pki.ServerAuth {
				if len(c.DNSNames)+len(c.IPAddresses) != 0 {
					t.Errorf("client certificate with DNS/IP SANs %v %v", c.DNSNames, c.IPAddresses)
				}
				return
			}
			for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
				if err := c.VerifyHostname(host); err != nil {
					t.Errorf("VerifyHostname(%s): %v", host, err)
				}
			}
			if err := c.VerifyHostname("example.com"); err == nil {
				t.Error("valid for example.com")
			}
		})
	}
	// The component names that Envoy checks as SNI/SAN.
	for name, host := range map[string]string{pki.XDSServer: "helix-xds", pki.AuthzServer: "helix-authz", pki.WorkerServer: "helix-worker"} {
		if err := readCert(t, res[name].CertFile).VerifyHostname(host); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestMutualTLS does real handshakes with the issued files: a client
// certificate is accepted by helix-xds's server certificate and
// vice versa, and a server certificate is refused as a client certificate.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	res := initLocal(t, pki.Options{Dir: dir})
	caPEM, err := os.ReadFile(res[pki.CAName].CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	load := func(name string) tls.Certificate {
		c, err := tls.LoadX509KeyPair(res[name].CertFile, res[name].KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{load(pki.XDSServer)},
		ClientCAs:    pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c) // echo; the handshake happens on first read
			}()
		}
	}()

	tests := []struct {
		name, client, serverName string
		ok                       bool
	}{
		{"by IP", pki.EnvoyWorkerClient, "127.0.0.1", true},
		{"envoy by SNI", pki.EnvoyXDSClient, "helix-xds", true},
		{"wrong server name", pki.EnvoyAuthzClient, "helix-authz", false},
		{"server certificate as client", pki.WorkerServer, "127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{
				RootCAs: pool, ServerName: tt.serverName, Certificates: []tls.Certificate{load(tt.client)},
			})
			if err == nil {
				defer conn.Close()
				// TLS 1.3: the server's verdict on the client certificate
				// arrives with the first read.
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err = conn.Write([]byte("x")); err == nil {
					_, err = io.ReadFull(conn, make([]byte, 1))
				}
			}
			if (err == nil) != tt.ok {
				t.Errorf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func TestInitIdempotent(t *testing.T) {
	dir := t.TempDir()
	initLocal(t, pki.Options{Dir: dir})
	before := snapshot(t, dir)

	for name, r := range initLocal(t, pki.Options{Dir: dir}) {
		if r.Action != pki.Kept {
			t.Errorf("second run: %s %s (%s), want kept", name, r.Action, r.Reason)
		}
	}
	after := snapshot(t, dir)
	if len(after) != len(before) {
		t.Errorf("files: %d before, %d after (temporary files left?)", len(before), len(after))
	}
	for f, b := range before {
		if !bytes.Equal(after[f], b) {
			t.Errorf("%s changed on a second run", f)
		}
	}

	for name, r := range initLocal(t, pki.Options{Dir: dir, Force: true}) {
		if r.Action != pki.Renewed || r.Reason != "forced" {
			t.Errorf("--force: %s %s (%s), want renewed (forced)", name, r.Action, r.Reason)
		}
	}
	for f, b := range snapshot(t, dir) {
		if bytes.Equal(before[f], b) {
			t.Errorf("%s unchanged by Force", f)
		}
	}
}

// TestInitRenews breaks one thing at a time and checks that Init reissues
// exactly what it must.
func TestInitRenews(t *testing.T) {
	const leaf = pki.WorkerServer
	leafCert, leafKey := func(dir string) string { c, _ := pki.Files(dir, leaf); return c },
		func(dir string) string { _, k := pki.Files(dir, leaf); return k }
	tests := []struct {
		name   string
		break_ func(t *testing.T, dir string, o *pki.Options, specs []pki.Spec)
		// want is the action per name; names not listed must be kept.
		want       map[string]pki.Action
		reasonHas  string
		allLeaves  pki.Action
		checkAfter func(t *testing.T, dir string)
	}{
		{
			name:   "pair deleted",
			break_: func(t *testing.T, dir string, _ *pki.Options, _ []pki.Spec) { rm(t, leafCert(dir), leafKey(dir)) },
			want:   map[string]pki.Action{leaf: pki.Created},
		},
		{
			name:      "certificate deleted",
			break_:    func(t *testing.T, dir string, _ *pki.Options, _ []pki.Spec) { rm(t, leafCert(dir)) },
			want:      map[string]pki.Action{leaf: pki.Renewed},
			reasonHas: "unusable",
		},
		{
			name: "key of another certificate",
			break_: func(t *testing.T, dir string, _ *pki.Options, _ []pki.Spec) {
				_, other := pki.Files(dir, pki.EnvoyServer)
				copyFile(t, other, leafKey(dir))
			},
			want:      map[string]pki.Action{leaf: pki.Renewed},
			reasonHas: "private key does not match",
		},
		{
			name: "garbage",
			break_: func(t *testing.T, dir string, _ *pki.Options, _ []pki.Spec) {
				if err := os.WriteFile(leafCert(dir), []byte("not PEM"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want:      map[string]pki.Action{leaf: pki.Renewed},
			reasonHas: "unusable",
		},
		{
			name: "names changed",
			break_: func(t *testing.T, _ string, _ *pki.Options, specs []pki.Spec) {
				i := slices.IndexFunc(specs, func(s pki.Spec) bool { return s.Name == leaf })
				specs[i].DNSNames = append(specs[i].DNSNames, "worker.example")
			},
			want:      map[string]pki.Action{leaf: pki.Renewed},
			reasonHas: "DNS names",
		},
		{
			name: "usage changed",
			break_: func(t *testing.T, _ string, _ *pki.Options, specs []pki.Spec) {
				i := slices.IndexFunc(specs, func(s pki.Spec) bool { return s.Name == leaf })
				specs[i].Usage = pki.ServerAuth | pki.ClientAuth
			},
			want:      map[string]pki.Action{leaf: pki.Renewed},
			reasonHas: "key usages",
		},
		{
			name: "leaves about to expire",
			break_: func(t *testing.T, _ string, o *pki.Options, _ []pki.Spec) {
				o.Now = func() time.Time { return time.Now().Add(pki.DefaultLifetime - pki.DefaultRenewBefore + time.Hour) }
			},
			want:      map[string]pki.Action{pki.CAName: pki.Kept},
			allLeaves: pki.Renewed,
			reasonHas: "expires",
		},
		{
			name: "new CA",
			break_: func(t *testing.T, dir string, _ *pki.Options, _ []pki.Spec) {
				c, k := pki.Files(dir, pki.CAName)
				rm(t, c, k)
			},
			want:      map[string]pki.Action{pki.CAName: pki.Created},
			allLeaves: pki.Renewed,
			reasonHas: "not signed by the current CA",
		},
		{
			name: "loose key permissions are tightened, the key kept",
			break_: func(t *testing.T, dir string, _ *pki.Options, _ []pki.Spec) {
				if err := os.Chmod(leafKey(dir), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string]pki.Action{},
			checkAfter: func(t *testing.T, dir string) {
				fi, err := os.Stat(leafKey(dir))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("key mode %o, want 600", fi.Mode().Perm())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			initLocal(t, pki.Options{Dir: dir})
			opts, specs := pki.Options{Dir: dir}, pki.LocalSpecs()
			tt.break_(t, dir, &opts, specs)
			res, err := pki.Init(context.Background(), opts, specs)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				want, ok := tt.want[r.Name]
				if !ok {
					want = pki.Kept
					if r.Name != pki.CAName && tt.allLeaves != "" {
						want = tt.allLeaves
					}
				}
				if r.Action != want {
					t.Errorf("%s: %s (%s), want %s", r.Name, r.Action, r.Reason, want)
				}
				if r.Action == pki.Renewed && !strings.Contains(r.Reason, tt.reasonHas) {
					t.Errorf("%s: reason %q, want it to mention %q", r.Name, r.Reason, tt.reasonHas)
				}
			}
			// What Init kept or made is valid now: a further run keeps all.
			again, err := pki.Init(context.Background(), opts, specs)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range again {
				if r.Action != pki.Kept {
					t.Errorf("run after repair: %s %s (%s)", r.Name, r.Action, r.Reason)
				}
			}
			if tt.checkAfter != nil {
				tt.checkAfter(t, dir)
			}
		})
	}
}

func rm(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSpecValidate(t *testing.T) {
	ok := pki.Spec{Name: "svc", CommonName: "svc", Usage: pki.ServerAuth, DNSNames: []string{"svc"}}
	tests := []struct {
		name  string
		edit  func(*pki.Spec)
		field string // "" = valid
	}{
		{"valid", func(*pki.Spec) {}, ""},
		{"client without SANs", func(s *pki.Spec) { s.Usage, s.DNSNames = pki.ClientAuth, nil }, ""},
		{"bad name", func(s *pki.Spec) { s.Name = "../x" }, "Name"},
		{"CA name", func(s *pki.Spec) { s.Name = "ca" }, "CA's"},
		{"no common name", func(s *pki.Spec) { s.CommonName = "" }, "CommonName"},
		{"no usage", func(s *pki.Spec) { s.Usage = 0 }, "Usage"},
		{"unknown usage", func(s *pki.Spec) { s.Usage = 8 }, "Usage"},
		{"server without SANs", func(s *pki.Spec) { s.DNSNames = nil }, "DNSNames or IPs"},
		{"empty DNS name", func(s *pki.Spec) { s.DNSNames = []string{""} }, "DNSNames[0]"},
		{"bad IP", func(s *pki.Spec) { s.IPs = []net.IP{{1, 2}} }, "IPs[0]"},
		{"URI without scheme", func(s *pki.Spec) { s.URIs = []*url.URL{{Path: "x"}} }, "URIs[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.edit(&s)
			err := s.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, pki.ErrSpec) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate = %v, want ErrSpec naming %s", err, tt.field)
			}
		})
	}
}

func TestInitRefuses(t *testing.T) {
	good := pki.LocalSpecs()
	tests := []struct {
		name  string
		opts  pki.Options
		specs []pki.Spec
	}{
		{"no dir", pki.Options{}, good},
		{"duplicate name", pki.Options{Dir: t.TempDir()}, append(pki.LocalSpecs(), good[0])},
		{"invalid spec", pki.Options{Dir: t.TempDir()}, []pki.Spec{{Name: "x"}}},
		{"leaf outlives CA", pki.Options{Dir: t.TempDir(), CALifetime: time.Hour, Lifetime: 2 * time.Hour}, good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := pki.Init(context.Background(), tt.opts, tt.specs); !errors.Is(err, pki.ErrSpec) {
				t.Fatalf("Init = %v, want ErrSpec", err)
			}
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pki.Init(ctx, pki.Options{Dir: t.TempDir()}, good); !errors.Is(err, context.Canceled) {
		t.Fatalf("Init with a cancelled context = %v", err)
	}
}

// A worker's client certificate carries its own identity; a name that is
// not a DNS label is refused before anything is written.
func TestWorkerClient(t *testing.T) {
	spec, err := pki.WorkerClient("pool-a")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	res, err := pki.Init(t.Context(), pki.Options{Dir: dir}, []pki.Spec{spec})
	if err != nil {
		t.Fatal(err)
	}
	c := readCert(t, res[1].CertFile)
	if id, err := identity.FromCert(c); err != nil || id != "spiffe://helixflow.local/worker/pool-a" {
		t.Errorf("identity %q, %v", id, err)
	}
	if res[1].Name != pki.WorkerClientName("pool-a") || res[1].Usage != pki.ClientAuth {
		t.Errorf("result %+v", res[1])
	}
	for _, bad := range []string{"", "Pool", "a/b", "a.b", "-a"} {
		if _, err := pki.WorkerClient(bad); !errors.Is(err, pki.ErrSpec) {
			t.Errorf("WorkerClient(%q): %v, want ErrSpec", bad, err)
		}
	}
}
