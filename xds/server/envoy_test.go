package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/helixflow/helixflow/envoy/bootstrap"
	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/freeport"
)

func freePort(t *testing.T) uint32 {
	t.Helper()
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return uint32(port)
}

// routedListener is an HTTP listener on 127.0.0.1:port routed by the
// route configuration "rc" over ADS.
func routedListener(t *testing.T, port uint32) *listener.Listener {
	t.Helper()
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := anypb.New(&hcm.HttpConnectionManager{
		StatPrefix:     "test",
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{ConfigSource: adsSource(), RouteConfigName: "rc"}},
		HttpFilters:    []*hcm.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: router}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &listener.Listener{
		Name: "test",
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
		}}},
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listener.Filter_TypedConfig{TypedConfig: mgr}}}}},
	}
}

// answering builds a listener on port whose routes answer body directly,
// plus the EDS cluster "simple" (exercising EDS over the real stream).
func answering(t *testing.T, port uint32, body string) resourceSet {
	t.Helper()
	lis := routedListener(t, port)
	rc := &route.RouteConfiguration{Name: "rc", VirtualHosts: []*route.VirtualHost{{
		Name: "all", Domains: []string{"*"},
		Routes: []*route.Route{{
			Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
			Action: &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{
				Status: 200, Body: &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: body}},
			}},
		}},
	}}}
	return resourceSet{
		resourcev3.ListenerType: {lis},
		resourcev3.RouteType:    {rc},
		resourcev3.ClusterType:  {edsCluster("simple", time.Second)},
		resourcev3.EndpointType: {assignment("simple", 9)},
	}
}

func serveMTLS(t *testing.T, s *Server, ca *envoytest.CA) string {
	t.Helper()
	pair := ca.Issue(t, "helix-xds", "helix-xds", "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(creds))
	s.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func get(t *testing.T, url string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func eventually(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last: %s)", what, d, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stat(t *testing.T, e *envoytest.Proc, name string) int {
	t.Helper()
	body, err := e.Admin(context.Background(), "/stats?filter="+regexp.QuoteMeta(name)+"$")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == name {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// envoyBootstrap serves s over mTLS and writes the bootstrap of an Envoy
// (node envoy-test in cluster helix) that takes its config from it.
func envoyBootstrap(t *testing.T, s *Server, delta bool) string {
	t.Helper()
	ca := envoytest.NewCA(t)
	addr := serveMTLS(t, s, ca)
	client := ca.Issue(t, "envoy", "envoy")
	b, err := bootstrap.Render(bootstrap.Config{
		NodeID: "envoy-test", NodeCluster: "helix", XDSAddress: addr, AdminAddress: "127.0.0.1:0", Delta: delta,
		XDSTLS: &bootstrap.TLS{CAFile: ca.CertFile, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "helix-xds"},
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startLive starts Envoy from bootstrapPath and waits until it is live.
func startLive(t *testing.T, bootstrapPath string) *envoytest.Proc {
	t.Helper()
	e := envoytest.Start(t, bootstrapPath)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := e.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// A real Envoy, over mTLS, takes the config, follows changes, rejects a
// bad one with a NACK that is recorded once (no resend loop), and keeps
// serving the last good config.
func TestRealEnvoy(t *testing.T) {
	envoytest.Binary(t)
	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			h := start(t, Options{NodeCluster: "helix"})
			path := envoyBootstrap(t, h.srv, delta)
			port := freePort(t)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			mustPublish(t, h.srv, answering(t, port, "v1"))
			e := startLive(t, path)
			eventually(t, "v1 served", 10*time.Second, func() (bool, string) {
				body, err := get(t, url)
				return body == "v1", fmt.Sprint(body, err)
			})

			mustPublish(t, h.srv, answering(t, port, "v2"))
			eventually(t, "v2 served", 5*time.Second, func() (bool, string) {
				body, err := get(t, url)
				return body == "v2", fmt.Sprint(body, err)
			})

			// Valid for protoc-gen-validate and consistent, refused by
			// Envoy: a listener filter whose config type nothing implements.
			bad := answering(t, port, "v2")
			junk, err := anypb.New(durationpb.New(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			l := bad[resourcev3.ListenerType][0].(*listener.Listener)
			l.ListenerFilters = []*listener.ListenerFilter{{Name: "junk", ConfigType: &listener.ListenerFilter_TypedConfig{TypedConfig: junk}}}
			bad[resourcev3.ListenerType] = []types.Resource{l}
			mustPublish(t, h.srv, bad)
			eventually(t, "NACK recorded", 5*time.Second, func() (bool, string) {
				st := h.srv.Status()
				return st.LastNACK != nil, fmt.Sprintf("%+v", st)
			})
			time.Sleep(time.Second) // a resend loop would show up here
			st := h.srv.Status()
			if st.NACKs != 1 || st.LastNACK.Type != "listener" || st.LastNACK.Node != "envoy-test" ||
				st.LastNACK.Version != st.Versions[CacheConfig].Version || st.LastNACK.Message == "" {
				t.Fatalf("after one bad config: %+v, last NACK %+v", st, st.LastNACK)
			}
			t.Logf("Envoy's NACK: %s", st.LastNACK.Message)
			if n := stat(t, e, "listener_manager.lds.update_rejected"); n != 1 {
				t.Fatalf("lds.update_rejected = %d, want 1", n)
			}
			if got := testutil.ToFloat64(h.srv.metrics.nacks.WithLabelValues("listener")); got != 1 {
				t.Fatalf("helix_xds_nacks_total{type=listener} = %v", got)
			}
			if body, err := get(t, url); body != "v2" {
				t.Fatalf("after the NACK Envoy serves %q (%v), want the last good config", body, err)
			}
			if len(st.Nodes) != 1 || st.Nodes[0].Delta != delta || st.Nodes[0].Acked["endpoint"] == "" {
				t.Fatalf("nodes = %+v", st.Nodes)
			}

			// Fixed inputs: a new version, accepted.
			mustPublish(t, h.srv, answering(t, port, "v3"))
			eventually(t, "v3 served", 5*time.Second, func() (bool, string) {
				body, err := get(t, url)
				return body == "v3", fmt.Sprint(body, err)
			})
		})
	}
}
