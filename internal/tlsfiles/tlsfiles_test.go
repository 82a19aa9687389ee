package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/pki"
)

func TestServerConfig(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Init(t.Context(), pki.Options{Dir: dir}, pki.LocalSpecs()); err != nil {
		t.Fatal(err)
	}
	cert, key := pki.Files(dir, "xds-server")
	ca, _ := pki.Files(dir, "ca")

	conf, err := ServerConfig(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if conf.ClientAuth != tls.NoClientCert || conf.MinVersion != tls.VersionTLS12 {
		t.Fatalf("without a client CA: %+v", conf)
	}
	if c, err := conf.GetCertificate(nil); err != nil || c == nil {
		t.Fatalf("GetCertificate: %v", err)
	}

	conf, err = ServerConfig(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	if conf.ClientAuth != tls.RequireAndVerifyClientCert || conf.ClientCAs == nil {
		t.Fatalf("with a client CA: %+v", conf)
	}

	bogus := filepath.Join(dir, "bogus.pem")
	if err := os.WriteFile(bogus, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ServerConfig(cert, key, bogus); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("bad client CA: %v", err)
	}
	if _, err := ServerConfig(filepath.Join(dir, "missing.pem"), key, ""); err == nil {
		t.Fatal("missing certificate accepted")
	}
}

// copyFiles writes each source file's content to its destination, dated
// mod (a rotation the stamps must notice even within the clock's tick).
func copyFiles(t *testing.T, dstToSrc map[string]string, mod time.Time) {
	t.Helper()
	for dst, src := range dstToSrc {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dst, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
}

// handshake runs a TLS handshake over a pipe between conf and a client
// presenting clientCert/clientKey and trusting caFile.
func handshake(t *testing.T, conf *tls.Config, caFile, clientCert, clientKey string) error {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	server := tls.Server(s, conf)
	done := make(chan error, 1)
	go func() { done <- server.Handshake(); s.Close() }()
	client := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "helix-xds", Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	cerr := client.Handshake()
	c.Close()
	if serr := <-done; serr != nil {
		return serr
	}
	return cerr
}

// A rotation of the certificate, its key and the client CA (a new CA
// altogether) takes effect at the next handshake; a half-written one keeps
// the last good files.
func TestFilesRotateWithoutRestart(t *testing.T) {
	var pkis [2]string
	for i := range pkis {
		pkis[i] = t.TempDir()
		if _, err := pki.Init(t.Context(), pki.Options{Dir: pkis[i]}, pki.LocalSpecs()); err != nil {
			t.Fatal(err)
		}
	}
	served := t.TempDir()
	cert, key, ca := filepath.Join(served, "tls.crt"), filepath.Join(served, "tls.key"), filepath.Join(served, "ca.crt")
	install := func(from string, mod time.Time) {
		srcCert, srcKey := pki.Files(from, "xds-server")
		srcCA, _ := pki.Files(from, "ca")
		copyFiles(t, map[string]string{cert: srcCert, key: srcKey, ca: srcCA}, mod)
	}
	start := time.Now().Add(-time.Hour)
	install(pkis[0], start)
	conf, err := ServerConfig(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	shake := func(from string) error {
		caFile, _ := pki.Files(from, "ca")
		c, k := pki.Files(from, pki.EnvoyXDSClient)
		return handshake(t, conf, caFile, c, k)
	}
	if err := shake(pkis[0]); err != nil {
		t.Fatalf("first CA's client: %v", err)
	}
	if shake(pkis[1]) == nil {
		t.Fatal("the second CA's client got in before the rotation")
	}

	install(pkis[1], start.Add(time.Minute))
	if err := shake(pkis[1]); err != nil {
		t.Fatalf("after the rotation, the new CA's client: %v", err)
	}
	if shake(pkis[0]) == nil {
		t.Fatal("after the rotation, the old CA's client still got in")
	}

	// Half written: a key that is not PEM yet.
	if err := os.WriteFile(key, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := shake(pkis[1]); err != nil {
		t.Fatalf("with a half-written key, the last good files should serve: %v", err)
	}
}

func TestExpiryMetricFollowsRotation(t *testing.T) {
	// Two PKIs whose certificates expire on different days.
	var dirs [2]string
	for i, lifetime := range []time.Duration{10 * 24 * time.Hour, 20 * 24 * time.Hour} {
		dirs[i] = t.TempDir()
		if _, err := pki.Init(t.Context(), pki.Options{Dir: dirs[i], Lifetime: lifetime}, pki.LocalSpecs()); err != nil {
			t.Fatal(err)
		}
	}
	served := t.TempDir()
	cert, key := filepath.Join(served, "tls.crt"), filepath.Join(served, "tls.key")
	install := func(dir string, mod time.Time) time.Time {
		c, k := pki.Files(dir, "xds-server")
		copyFiles(t, map[string]string{cert: c, key: k}, mod)
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf.NotAfter
	}
	start := time.Now().Add(-time.Hour)
	want := install(dirs[0], start)
	conf, err := ServerConfig(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	m := ExpiryMetric(conf, "grpc")
	if got := testutil.ToFloat64(m); got != float64(want.Unix()) {
		t.Fatalf("expiry = %v, want %v", got, want.Unix())
	}
	rotated := install(dirs[1], start.Add(time.Minute))
	if rotated.Sub(want) < 24*time.Hour {
		t.Fatalf("the two certificates expire at %v and %v", want, rotated)
	}
	want = rotated
	if got := testutil.ToFloat64(m); got != float64(want.Unix()) {
		t.Fatalf("after a rotation, expiry = %v, want %v", got, want.Unix())
	}
	if err := testutil.CollectAndCompare(m, strings.NewReader(fmt.Sprintf(`
# HELP %[1]s When the TLS certificate this process serves on a listener expires (Unix time): it is read again when its file changes.
# TYPE %[1]s gauge
%[1]s{listener="grpc"} %[2]g
`, ExpiryMetricName, float64(want.Unix())))); err != nil {
		t.Fatal(err)
	}
}

// AcceptPeers admits only the identities named: every client certificate
// below comes from the same CA.
func TestAcceptPeers(t *testing.T) {
	dir := t.TempDir()
	w1, err := pki.WorkerClient("w1")
	if err != nil {
		t.Fatal(err)
	}
	w2, err := pki.WorkerClient("w2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.Init(t.Context(), pki.Options{Dir: dir}, append(pki.LocalSpecs(), w1, w2)); err != nil {
		t.Fatal(err)
	}
	cert, key := pki.Files(dir, pki.XDSServer)
	ca, _ := pki.Files(dir, pki.CAName)
	conf, err := ServerConfig(cert, key, ca, AcceptPeers(identity.Envoy, identity.Worker("w2")))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		client string
		ok     bool
	}{
		{pki.EnvoyXDSClient, true},
		{pki.WorkerClientName("w2"), true},
		{pki.WorkerClientName("w1"), false},
	} {
		c, k := pki.Files(dir, tc.client)
		err := handshake(t, conf, ca, c, k)
		if (err == nil) != tc.ok {
			t.Errorf("%s: handshake err = %v, want ok %v", tc.client, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "spiffe://helixflow.local/worker/w1 may not call this listener") && !tc.ok {
			t.Errorf("%s: error %q does not name the identity refused", tc.client, err)
		}
	}
}
