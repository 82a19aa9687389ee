package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/wire"
	pb "github.com/helixflow/helixflow/proto/inference"
)

func TestTLSFlags(t *testing.T) {
	loopback := []string{"--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1"}
	shared := []string{"--tls-cert-file", "s.crt", "--tls-key-file", "s.key"}
	triton := []string{"--grpc-server-cert", "g.crt", "--grpc-server-key", "g.key"}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	off := listenerTLS{}
	sharedTLS := listenerTLS{certFile: "s.crt", keyFile: "s.key"}
	sharedMTLS := listenerTLS{certFile: "s.crt", keyFile: "s.key", clientCAFile: "ca.crt"}
	tests := []struct {
		name       string
		args       []string
		err        string // substring; "" when valid
		grpc, http listenerTLS
		warnings   int
	}{
		{name: "no address given, no TLS: loopback", args: nil, grpc: off, http: off},
		{name: "plaintext on 0.0.0.0, given", args: []string{"--http-address", "0.0.0.0"}, err: "--http-address 0.0.0.0 without TLS is refused"},
		{name: "plaintext on an empty address (all interfaces)", args: []string{"--http-address", "127.0.0.1", "--grpc-address", ""}, err: "--grpc-address  without TLS is refused"},
		{name: "plaintext on a LAN address", args: []string{"--http-address", "10.0.0.7", "--grpc-address", "127.0.0.1"}, err: "--http-address 10.0.0.7"},
		{name: "plaintext on loopback", args: loopback, grpc: off, http: off},
		{name: "plaintext on localhost and ::1", args: []string{"--http-address", "localhost", "--grpc-address", "::1"}, grpc: off, http: off},
		{name: "plaintext, the other listener off", args: []string{"--allow-http=false", "--grpc-address", "127.0.0.1"}, grpc: off, http: off},
		{name: "plaintext on 0.0.0.0 with --insecure-plaintext", args: []string{"--insecure-plaintext"}, grpc: off, http: off, warnings: 2},
		{name: "mTLS on both", args: cat(shared, []string{"--client-ca-file", "ca.crt"}), grpc: sharedMTLS, http: sharedMTLS},
		{name: "TLS without client CA on 0.0.0.0", args: shared, grpc: sharedTLS, http: sharedTLS, warnings: 2},
		{name: "TLS without client CA on loopback", args: cat(shared, loopback), grpc: sharedTLS, http: sharedTLS},
		{name: "certificate without key", args: []string{"--tls-cert-file", "s.crt"}, err: "--tls-cert-file and --tls-key-file go together"},
		{name: "key without certificate", args: []string{"--tls-key-file", "s.key"}, err: "--tls-cert-file and --tls-key-file go together"},
		{name: "client CA without certificate", args: cat(loopback, []string{"--client-ca-file", "ca.crt"}), err: "--client-ca-file needs --tls-cert-file"},
		{name: "Triton: --grpc-use-ssl without files", args: cat(loopback, []string{"--grpc-use-ssl"}), err: "--grpc-use-ssl needs --grpc-server-cert and --grpc-server-key"},
		{name: "Triton: --grpc-use-ssl without key", args: cat(loopback, []string{"--grpc-use-ssl", "--grpc-server-cert", "g.crt"}), err: "--grpc-use-ssl needs"},
		{name: "Triton: mutual without root cert", args: cat(loopback, triton, []string{"--grpc-use-ssl-mutual"}), err: "--grpc-use-ssl-mutual needs --grpc-root-cert"},
		{name: "Triton: files without --grpc-use-ssl", args: cat(loopback, triton), err: "need --grpc-use-ssl"},
		{name: "Triton: root cert without --grpc-use-ssl", args: cat(loopback, []string{"--grpc-root-cert", "r.crt"}), err: "need --grpc-use-ssl"},
		{name: "Triton: --grpc-use-ssl-mutual=false is plaintext", args: cat(loopback, []string{"--grpc-use-ssl-mutual=false"}), grpc: off, http: off},
		{
			name: "Triton: TLS", args: cat(loopback, triton, []string{"--grpc-use-ssl"}),
			grpc: listenerTLS{certFile: "g.crt", keyFile: "g.key"}, http: off,
		},
		{
			name: "Triton: mutual implies --grpc-use-ssl", args: cat(triton, []string{"--grpc-use-ssl-mutual", "--grpc-root-cert", "r.crt", "--grpc-address", "0.0.0.0", "--http-address", "127.0.0.1"}),
			grpc: listenerTLS{certFile: "g.crt", keyFile: "g.key", clientCAFile: "r.crt"}, http: off,
		},
		{
			name: "Triton: root cert without mutual is ignored, with a warning", args: cat(loopback, triton, []string{"--grpc-use-ssl", "--grpc-root-cert", "r.crt"}),
			grpc: listenerTLS{certFile: "g.crt", keyFile: "g.key"}, http: off, warnings: 1,
		},
		{
			name: "Triton's flags win on gRPC, the shared set serves HTTP", args: cat(shared, triton, []string{"--client-ca-file", "ca.crt", "--grpc-use-ssl-mutual", "--grpc-root-cert", "r.crt"}),
			grpc: listenerTLS{certFile: "g.crt", keyFile: "g.key", clientCAFile: "r.crt"}, http: sharedMTLS,
		},
		{name: "Triton: gRPC TLS, HTTP plaintext on 0.0.0.0", args: cat(triton, []string{"--grpc-use-ssl-mutual", "--grpc-root-cert", "r.crt", "--http-address", "0.0.0.0"}), err: "--http-address 0.0.0.0 without TLS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(append([]string{"--model-repository", "models"}, tc.args...))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errTLSFlags) {
					t.Fatalf("err = %v, want errTLSFlags with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := o.tls.grpc(); g != tc.grpc {
				t.Errorf("gRPC TLS %+v, want %+v", g, tc.grpc)
			}
			if h := o.tls.http(); h != tc.http {
				t.Errorf("HTTP TLS %+v, want %+v", h, tc.http)
			}
			if w := tlsWarnings(o); len(w) != tc.warnings {
				t.Errorf("%d warnings, want %d: %q", len(w), tc.warnings, w)
			}
		})
	}
}

// TestDefaultAddresses: the HTTP and gRPC addresses not given are Triton's
// 0.0.0.0 only with TLS or --insecure-plaintext, else loopback.
func TestDefaultAddresses(t *testing.T) {
	mtls := []string{"--tls-cert-file", "s.crt", "--tls-key-file", "s.key", "--client-ca-file", "ca.crt"}
	tests := []struct {
		name                string
		args                []string
		http, grpc, whyHTTP string
	}{
		{"as a Triton user types it", nil, "127.0.0.1", "127.0.0.1", "default without TLS: loopback only"},
		{"mTLS", mtls, "0.0.0.0", "0.0.0.0", "default with TLS"},
		{"--insecure-plaintext", []string{"--insecure-plaintext"}, "0.0.0.0", "0.0.0.0", "default with --insecure-plaintext"},
		{"TLS on gRPC only (Triton's flags)", []string{"--grpc-use-ssl", "--grpc-server-cert", "g.crt", "--grpc-server-key", "g.key"}, "127.0.0.1", "0.0.0.0", "default without TLS"},
		{"given", []string{"--http-address", "::1", "--grpc-address", "localhost"}, "::1", "localhost", "--http-address given"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(append([]string{"--model-repository", "models"}, tc.args...))
			if err != nil {
				t.Fatal(err)
			}
			if o.httpAddr != tc.http || o.grpcAddr != tc.grpc || !strings.HasPrefix(o.httpAddrWhy, tc.whyHTTP) || o.grpcAddrWhy == "" {
				t.Errorf("HTTP %q (%s), gRPC %q (%s); want HTTP %q (%s…), gRPC %q", o.httpAddr, o.httpAddrWhy, o.grpcAddr, o.grpcAddrWhy, tc.http, tc.whyHTTP, tc.grpc)
			}
		})
	}
}

// TestStartsAsTritonUserTypesIt: `helix-worker --model-repository DIR`
// (ports 0 here, so as not to collide) starts, serves on loopback and says
// why in its log.
func TestStartsAsTritonUserTypesIt(t *testing.T) {
	o, err := parseFlags([]string{"--model-repository", t.TempDir(), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--exit-timeout-secs", "2"})
	if err != nil {
		t.Fatal(err)
	}
	logs, stop := runWorker(t, o)
	stop()
	for _, want := range []string{`msg="serving HTTP" address=127.0.0.1:`, `msg="serving gRPC" address=127.0.0.1:`, `why="default without TLS: loopback only`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// testCerts are two unrelated CAs made by internal/pki: the worker's
// (its server certificate, Envoy's client certificate) and another one.
type testCerts struct{ ours, other string }

func newTestCerts(t *testing.T) testCerts {
	t.Helper()
	c := testCerts{ours: t.TempDir(), other: t.TempDir()}
	worker, err := pki.WorkerClient(testWorker)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{c.ours, c.other} {
		if _, err := pki.Init(t.Context(), pki.Options{Dir: dir}, append(pki.LocalSpecs(), worker)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// testWorker names the worker identity newTestCerts issues.
const testWorker = "w1"

func caFile(dir string) string { f, _ := pki.Files(dir, pki.CAName); return f }

// clientTLS is what Envoy's workers_tls does: trust rootDirs' CAs, expect
// the SAN helix-worker, present clientDir's envoy-worker-client
// certificate ("": none).
func clientTLS(t *testing.T, clientDir string, rootDirs ...string) *tls.Config {
	t.Helper()
	return clientTLSAs(t, pki.EnvoyWorkerClient, clientDir, rootDirs...)
}

// clientTLSAs is clientTLS presenting certificate name instead of Envoy's.
func clientTLSAs(t *testing.T, name, clientDir string, rootDirs ...string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	for _, d := range rootDirs {
		b, err := os.ReadFile(caFile(d))
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(b)
	}
	conf := &tls.Config{RootCAs: pool, ServerName: "helix-worker", MinVersion: tls.VersionTLS12}
	if clientDir != "" {
		cert, err := tls.LoadX509KeyPair(pki.Files(clientDir, name))
		if err != nil {
			t.Fatal(err)
		}
		// Sent whatever CAs the server names, as Envoy does (Go's client
		// would otherwise send none from a CA the server does not list).
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return conf
}

// workerPorts are where a test worker serves.
type workerPorts struct{ grpc, http int }

// startWorker runs the worker (in this process, with its real flags and
// servers) on an empty model repository until the test ends.
func startWorker(t *testing.T, args ...string) workerPorts {
	t.Helper()
	var p workerPorts
	for _, port := range []*int{&p.grpc, &p.http} {
		var err error
		if *port, err = freeport.Pick(); err != nil {
			t.Fatal(err)
		}
	}
	o, err := parseFlags(append([]string{
		"--model-repository", t.TempDir(), "--allow-metrics=false", "--exit-timeout-secs", "2",
		"--grpc-port", strconv.Itoa(p.grpc), "--http-port", strconv.Itoa(p.http),
	}, args...))
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, o)
	return p
}

// grpcLive calls ServerLive; conf nil: plaintext.
func grpcLive(port int, conf *tls.Config) error {
	creds := insecure.NewCredentials()
	if conf != nil {
		creds = credentials.NewTLS(conf)
	}
	conn, err := grpc.NewClient(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := pb.NewGRPCInferenceServiceClient(conn).ServerLive(ctx, &pb.ServerLiveRequest{})
	if err != nil {
		return err
	}
	if !resp.GetLive() {
		return errors.New("not live")
	}
	return nil
}

// httpReady GETs /v2/health/ready on a new connection; conf nil: plaintext.
func httpReady(port int, conf *tls.Config) error {
	scheme := "http"
	if conf != nil {
		scheme = "https"
		conf = conf.Clone()
		conf.NextProtos = []string{"h2", alpnHTTP} // as curl offers
	}
	c := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true},
	}
	resp, err := c.Get(fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, port, wire.RESTServerReady))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	if conf != nil && (resp.TLS == nil || resp.TLS.NegotiatedProtocol != alpnHTTP) {
		return fmt.Errorf("ALPN %q, want %q", resp.TLS.NegotiatedProtocol, alpnHTTP)
	}
	return nil
}

// handshake connects with conf offering alpn (as Envoy's clusters do) and
// returns the certificate served and the protocol negotiated.
func handshake(t *testing.T, port int, conf *tls.Config, alpn string) (*x509.Certificate, string) {
	t.Helper()
	conf = conf.Clone()
	conf.NextProtos = []string{alpn}
	d := &tls.Dialer{Config: conf, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	c, err := d.DialContext(t.Context(), "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("handshake with port %d: %v", port, err)
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	return st.PeerCertificates[0], st.NegotiatedProtocol
}

// TestTLSHandshake starts workers with TLS and mTLS and calls them as
// Envoy does and as intruders would.
func TestTLSHandshake(t *testing.T) {
	c := newTestCerts(t)
	cert, key := pki.Files(c.ours, pki.WorkerServer)
	loopback := []string{"--grpc-address", "127.0.0.1", "--http-address", "127.0.0.1"}
	workers := []struct {
		name               string
		args               []string
		grpcMTLS, httpMTLS bool
	}{
		{"shared flags, mTLS on both", append([]string{"--tls-cert-file", cert, "--tls-key-file", key, "--client-ca-file", caFile(c.ours)}, loopback...), true, true},
		{"Triton's gRPC flags (mutual), HTTP TLS only", append([]string{
			"--grpc-use-ssl-mutual", "--grpc-server-cert", cert, "--grpc-server-key", key, "--grpc-root-cert", caFile(c.ours),
			"--tls-cert-file", cert, "--tls-key-file", key,
		}, loopback...), true, false},
	}
	clients := []struct {
		name string
		conf *tls.Config // nil: plaintext
		// ok reports whether the call must succeed given the listener's mTLS.
		ok func(mtls bool) bool
	}{
		{"client certificate from the worker's CA", clientTLS(t, c.ours, c.ours), func(bool) bool { return true }},
		{"no client certificate", clientTLS(t, "", c.ours), func(mtls bool) bool { return !mtls }},
		{"client certificate from another CA", clientTLS(t, c.other, c.ours), func(mtls bool) bool { return !mtls }},
		// Same CA, another identity: only Envoy may call a worker (it
		// would otherwise take inference and repository calls from
		// another worker).
		{"a worker's client certificate", clientTLSAs(t, pki.WorkerClientName(testWorker), c.ours, c.ours), func(mtls bool) bool { return !mtls }},
		{"plaintext", nil, func(bool) bool { return false }},
	}
	for _, w := range workers {
		t.Run(w.name, func(t *testing.T) {
			p := startWorker(t, w.args...)
			for _, cl := range clients {
				t.Run(cl.name, func(t *testing.T) {
					if err, want := grpcLive(p.grpc, cl.conf), cl.ok(w.grpcMTLS); (err == nil) != want {
						t.Errorf("gRPC ServerLive: err = %v, want success %v", err, want)
					}
					if err, want := httpReady(p.http, cl.conf), cl.ok(w.httpMTLS); (err == nil) != want {
						t.Errorf("HTTP /v2/health/ready: err = %v, want success %v", err, want)
					}
				})
			}
			// Envoy's clusters offer one protocol each: h2 to gRPC, http/1.1 to HTTP.
			conf := clientTLS(t, c.ours, c.ours)
			if _, proto := handshake(t, p.grpc, conf, "h2"); proto != "h2" {
				t.Errorf("gRPC port negotiated %q, want h2", proto)
			}
			if _, proto := handshake(t, p.http, conf, "http/1.1"); proto != "http/1.1" {
				t.Errorf("HTTP port negotiated %q, want http/1.1", proto)
			}
		})
	}
}

// TestTLSRotation replaces the certificate files under a running worker:
// new connections get the new certificate, without a restart.
func TestTLSRotation(t *testing.T) {
	c := newTestCerts(t)
	served := t.TempDir()
	cert, key := filepath.Join(served, "tls.crt"), filepath.Join(served, "tls.key")
	install := func(dir string) {
		t.Helper()
		srcCert, srcKey := pki.Files(dir, pki.WorkerServer)
		// Key first, each by rename, as a secret rotation would.
		for _, f := range [][2]string{{srcKey, key}, {srcCert, cert}} {
			b, err := os.ReadFile(f[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f[1]+".new", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(f[1]+".new", f[1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	certOf := func(dir string) *x509.Certificate {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(pki.Files(dir, pki.WorkerServer))
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf
	}
	install(c.ours)
	p := startWorker(t, "--tls-cert-file", cert, "--tls-key-file", key, "--client-ca-file", caFile(c.ours),
		"--grpc-address", "127.0.0.1", "--http-address", "127.0.0.1")

	// The client trusts both CAs and presents a certificate from the
	// worker's client CA, which does not change.
	conf := clientTLS(t, c.ours, c.ours, c.other)
	for _, step := range []struct {
		name string
		dir  string
	}{{"before", c.ours}, {"after rotation", c.other}} {
		if step.dir == c.other {
			install(c.other)
		}
		want := certOf(step.dir)
		for _, port := range []struct {
			name string
			n    int
			alpn string
		}{{"gRPC", p.grpc, "h2"}, {"HTTP", p.http, "http/1.1"}} {
			got, _ := handshake(t, port.n, conf, port.alpn)
			if !bytes.Equal(got.Raw, want.Raw) {
				t.Errorf("%s, %s port: served serial %s, want %s", step.name, port.name, got.SerialNumber, want.SerialNumber)
			}
		}
		if err := grpcLive(p.grpc, conf); err != nil {
			t.Errorf("%s: gRPC ServerLive: %v", step.name, err)
		}
		if err := httpReady(p.http, conf); err != nil {
			t.Errorf("%s: HTTP ready: %v", step.name, err)
		}
	}
}
