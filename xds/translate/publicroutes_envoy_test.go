package translate

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// publicBackend stands in for helix-authz's public port and remembers
// what each request carried.
type publicBackend struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (b *publicBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.seen = append(b.seen, r.Clone(r.Context()))
	b.mu.Unlock()
	_, _ = w.Write([]byte("public"))
}

func (b *publicBackend) last() *http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		return nil
	}
	return b.seen[len(b.seen)-1]
}

func (b *publicBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seen)
}

// The real Envoy with the translated listener, routes and clusters: the
// public paths reach helix-authz's public port without a Check, under the
// gateway's CORS policy, with client x-helix-*
// headers stripped and Envoy's entry appended to X-Forwarded-For;
// a model path still asks ext_authz, and other paths are Envoy's 404.
func TestEnvoyPublicRoutes(t *testing.T) {
	envoytest.Binary(t)
	authz := &countingAuthz{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, authz)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	backend := &publicBackend{}
	public := httptest.NewServer(backend)
	t.Cleanup(public.Close)

	port := freeTCPPort(t)
	g := &ir.Gateway{
		Listener: ir.Listener{Address: "127.0.0.1", Port: port},
		AuthZ: ir.AuthZ{
			Upstream: ir.Upstream{Address: "127.0.0.1", Port: uint32(lis.Addr().(*net.TCPAddr).Port)},
			Public:   &ir.Upstream{Address: "127.0.0.1", Port: uint32(public.Listener.Addr().(*net.TCPAddr).Port)},
		},
		CORS: &ir.CORS{AllowOrigins: []string{origin}, AllowCredentials: true},
	}
	g.ApplyDefaults()
	r, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(path, publicRoutesBootstrap(t, r), 0o600); err != nil {
		t.Fatal(err)
	}
	envoytest.Start(t, path)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	c := clientFrom("127.0.0.1")
	do := func(method, p string, h http.Header) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+p, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("Envoy's listener did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}

	before := authz.calls.Load()
	for _, p := range append(wire.PublicExactPaths(), "/portal/", "/api/v1/account", "/oauth2/token", "/.well-known/jwks.json", "/assets/site.css") {
		n := backend.count()
		resp := do(http.MethodGet, p, http.Header{"Origin": {origin}, "X-Helix-Client": {"forged"}, "X-Forwarded-For": {"203.0.113.9"}})
		if resp.StatusCode != http.StatusOK || backend.count() != n+1 {
			t.Fatalf("GET %s: %d, backend reached %d times", p, resp.StatusCode, backend.count()-n)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("GET %s: Access-Control-Allow-Origin %q, want the gateway's CORS policy (%s)", p, got, origin)
		}
		got := backend.last()
		if got.URL.Path != p {
			t.Errorf("backend got path %q, want %q", got.URL.Path, p)
		}
		if v := got.Header.Get("X-Helix-Client"); v != "" {
			t.Errorf("GET %s: the client's x-helix-client reached helix-authz: %q", p, v)
		}
		// Envoy appends the peer, or for a loopback peer its own address:
		// the last entry is Envoy's, whatever the client wrote before it.
		hops := strings.Split(strings.Join(got.Header.Values("X-Forwarded-For"), ","), ",")
		if last := strings.TrimSpace(hops[len(hops)-1]); len(hops) != 2 || last == "203.0.113.9" || net.ParseIP(last) == nil {
			t.Errorf("GET %s: X-Forwarded-For %q: want the client's 203.0.113.9 and then Envoy's entry", p, hops)
		}
	}
	// A listed origin's preflight (a browser app's PKCE token request) is
	// answered by Envoy's CORS filter, as on the model routes.
	n := backend.count()
	resp := do(http.MethodOptions, "/oauth2/token", http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}})
	if backend.count() != n || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("preflight: %d, backend reached %d times, headers %v", resp.StatusCode, backend.count()-n, resp.Header)
	}
	if got := authz.calls.Load() - before; got != 0 {
		t.Fatalf("ext_authz was asked %d times for public paths", got)
	}
	// Not public: Envoy's 404 (no route), nothing reaches helix-authz.
	for _, p := range []string{"/portal", "/login/x", "/apis/v1/x", "/metrics"} {
		n := backend.count()
		if resp := do(http.MethodGet, p, nil); resp.StatusCode != http.StatusNotFound || backend.count() != n {
			t.Errorf("GET %s: %d, backend reached %d times; want Envoy's 404", p, resp.StatusCode, backend.count()-n)
		}
	}
	// Model routes keep their Check.
	resp = do(http.MethodGet, wire.RESTServerReady, http.Header{"Origin": {origin}})
	if got := authz.calls.Load() - before; got != 1 {
		t.Fatalf("GET %s: ext_authz asked %d times, want 1", wire.RESTServerReady, got)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("GET %s: no CORS headers on a model path: %v", wire.RESTServerReady, resp.Header)
	}
}

// publicRoutesBootstrap serves the translated listener with the
// translated route configuration inline and the helix-authz clusters;
// the worker pools' (EDS) clusters are left out, so their routes answer
// 503, unless extra stands in for them.
func publicRoutesBootstrap(t *testing.T, r *Resources, extra ...*clusterv3.Cluster) []byte {
	t.Helper()
	l := r.Listeners[0].(*listenerv3.Listener)
	f := l.FilterChains[0].Filters[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	rc := proto.Clone(r.Routes[0]).(*routev3.RouteConfiguration)
	rc.ValidateClusters = wrapperspb.Bool(false)
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustTyped(t, hcm)}
	b := &bootstrapv3.Bootstrap{
		Node:            &corev3.Node{Id: "public-routes", Cluster: "helix"},
		Admin:           &bootstrapv3.Admin{Address: socketAddress("127.0.0.1", 0)},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Listeners: []*listenerv3.Listener{l}, Clusters: extra},
	}
	for _, c := range r.Clusters {
		if c := c.(*clusterv3.Cluster); c.Name == ClusterAuthZ || c.Name == ClusterAuthZPublic {
			b.StaticResources.Clusters = append(b.StaticResources.Clusters, c)
		}
	}
	js, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// The ADS server hashes routes as vtprotobuf writes them, which does not
// order a map's entries: a route or virtual host with two per-filter
// entries would change version from one translation to the next.
func TestAtMostOnePerFilterEntry(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.in.yaml")
	for _, in := range inputs {
		r, err := Translate(loadIR(t, in))
		if err != nil {
			t.Fatal(err)
		}
		for _, vh := range r.Routes[0].(*routev3.RouteConfiguration).VirtualHosts {
			if len(vh.TypedPerFilterConfig) > 1 {
				t.Errorf("%s: virtual host %s has %d per-filter entries", in, vh.Name, len(vh.TypedPerFilterConfig))
			}
			for _, rt := range vh.Routes {
				if len(rt.TypedPerFilterConfig) > 1 {
					t.Errorf("%s: route %s has %d per-filter entries", in, rt.Name, len(rt.TypedPerFilterConfig))
				}
			}
		}
	}
}
