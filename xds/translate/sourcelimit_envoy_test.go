package translate

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/xds/ir"
)

// countingAuthz is an ext_authz service that allows everything and counts
// the Checks it gets.
type countingAuthz struct {
	authv3.UnimplementedAuthorizationServer
	calls atomic.Int64
}

func (a *countingAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.calls.Add(1)
	return &authv3.CheckResponse{Status: &status.Status{}}, nil
}

func freeTCPPort(t *testing.T) uint32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

// clientFrom sends HTTP/1.1 requests from the loopback address src.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// origin is the browser origin CORS allows in TestEnvoySourceLimit.
const origin = "https://app.helix.test"

// The real Envoy with the translated filter chain: a flood from one source
// address is refused with 429 and Retry-After (readable by a browser)
// before ext_authz is asked, while another address is still served.
func TestEnvoySourceLimit(t *testing.T) {
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

	port := freeTCPPort(t)
	g := &ir.Gateway{
		Listener:    ir.Listener{Address: "127.0.0.1", Port: port},
		AuthZ:       ir.AuthZ{Upstream: ir.Upstream{Address: "127.0.0.1", Port: uint32(lis.Addr().(*net.TCPAddr).Port)}},
		SourceLimit: &ir.SourceLimit{RequestsPerSecond: 1, Burst: 3, MaxSources: 100},
		CORS:        &ir.CORS{AllowOrigins: []string{origin}},
	}
	g.ApplyDefaults()
	r, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	t.Cleanup(backend.Close)
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(path, sourceLimitBootstrap(t, r, uint32(backend.Listener.Addr().(*net.TCPAddr).Port)), 0o600); err != nil {
		t.Fatal(err)
	}
	envoytest.Start(t, path)
	url := fmt.Sprintf("http://127.0.0.1:%d/v2/health/ready", port)

	get := func(c *http.Client) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Origin", origin)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	// Wait for the listener from a third address.
	probe := clientFrom("127.0.0.3")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := get(probe); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Envoy's listener did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}

	before := authz.calls.Load()
	flood := clientFrom("127.0.0.1")
	var ok, limited int
	for range 20 {
		resp, err := get(flood)
		if err != nil {
			t.Fatal(err)
		}
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			// CORS runs first: a browser can read the 429.
			if resp.Header.Get("Access-Control-Allow-Origin") != origin {
				t.Errorf("429 without CORS headers: %v", resp.Header)
			}
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	// Three at once, maybe one more refilled meanwhile; the rest refused.
	if ok < 3 || ok > 5 || limited != 20-ok {
		t.Fatalf("flood: %d passed, %d limited", ok, limited)
	}
	if got := authz.calls.Load() - before; got != int64(ok) {
		t.Fatalf("ext_authz was asked %d times for %d passed requests: refused ones reached it", got, ok)
	}
	if resp, err := get(clientFrom("127.0.0.2")); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("another source address: %v %v", resp, err)
	}
}

// sourceLimitBootstrap serves the translated listener with the translated
// virtual host's settings (CORS) and one inline route to a backend on
// 127.0.0.1:backendPort instead of the worker pools (Envoy's CORS filter
// skips direct responses), and the helix-authz cluster (and the tracing
// collector's, when on); nothing comes over
// ADS.
func sourceLimitBootstrap(t *testing.T, r *Resources, backendPort uint32) []byte {
	t.Helper()
	l := r.Listeners[0].(*listenerv3.Listener)
	f := l.FilterChains[0].Filters[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
		Name: "inline",
		VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
			TypedPerFilterConfig: r.Routes[0].(*routev3.RouteConfiguration).VirtualHosts[0].TypedPerFilterConfig,
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "backend"},
				}},
			}}}},
	}}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustTyped(t, hcm)}
	b := &bootstrapv3.Bootstrap{
		Node:            &corev3.Node{Id: "source-limit", Cluster: "helix"},
		Admin:           &bootstrapv3.Admin{Address: socketAddress("127.0.0.1", 0)},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Listeners: []*listenerv3.Listener{l}},
	}
	b.StaticResources.Clusters = append(b.StaticResources.Clusters, &clusterv3.Cluster{
		Name:                 "backend",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       dur(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "backend", Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
				Endpoint: &endpointv3.Endpoint{Address: socketAddress("127.0.0.1", backendPort)},
			}}},
		}}},
	})
	for _, c := range r.Clusters {
		if c := c.(*clusterv3.Cluster); c.Name == ClusterAuthZ || c.Name == ClusterTracing {
			b.StaticResources.Clusters = append(b.StaticResources.Clusters, c)
		}
	}
	js, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
