package server

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/helixflow/helixflow/internal/wire"
)

// Builders for a minimal, consistent gateway: one listener with RDS "rc",
// one EDS cluster per pool, one assignment per cluster.

func adsSource() *core.ConfigSource {
	return &core.ConfigSource{ResourceApiVersion: core.ApiVersion_V3, ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}}}
}

func edsCluster(name string, timeout time.Duration) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(timeout),
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
	}
}

func assignment(name string, ports ...uint32) *endpoint.ClusterLoadAssignment {
	cla := &endpoint.ClusterLoadAssignment{ClusterName: name}
	var lbs []*endpoint.LbEndpoint
	for _, p := range ports {
		lbs = append(lbs, &endpoint.LbEndpoint{HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
			Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
				Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: p},
			}}},
		}}})
	}
	cla.Endpoints = []*endpoint.LocalityLbEndpoints{{LbEndpoints: lbs}}
	return cla
}

func httpListener(t *testing.T, routeName string) *listener.Listener {
	t.Helper()
	mgr := &hcm.HttpConnectionManager{
		StatPrefix:     "ingress",
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{ConfigSource: adsSource(), RouteConfigName: routeName}},
	}
	a, err := anypb.New(mgr)
	if err != nil {
		t.Fatal(err)
	}
	return &listener.Listener{
		Name: "https",
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &core.SocketAddress_PortValue{PortValue: 10443},
		}}},
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listener.Filter_TypedConfig{TypedConfig: a}}}}},
	}
}

func routeConfig(name string, clusters ...string) *route.RouteConfiguration {
	rc := &route.RouteConfiguration{Name: name}
	vh := &route.VirtualHost{Name: "all", Domains: []string{"*"}}
	for _, c := range clusters {
		vh.Routes = append(vh.Routes, &route.Route{
			Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: wire.RESTModelsPrefix + c}},
			Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: c}}},
		})
	}
	rc.VirtualHosts = []*route.VirtualHost{vh}
	return rc
}

func gateway(t *testing.T, ports ...uint32) resourceSet {
	return resourceSet{
		resourcev3.ListenerType: {httpListener(t, "rc")},
		resourcev3.RouteType:    {routeConfig("rc", "simple")},
		resourcev3.ClusterType:  {edsCluster("simple", time.Second)},
		resourcev3.EndpointType: {assignment("simple", ports...)},
	}
}

type harness struct {
	srv  *Server
	reg  *prometheus.Registry
	conn *grpc.ClientConn
}

func start(t *testing.T, opts Options) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	srv, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &harness{srv: srv, reg: reg, conn: conn}
}

func node(cluster string) *core.Node { return &core.Node{Id: "envoy-1", Cluster: cluster} }

// sotw is a minimal state-of-the-world ADS client.
type sotw struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resps  chan *discovery.DiscoveryResponse
	errs   chan error
}

func (h *harness) sotw(t *testing.T) *sotw {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discovery.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &sotw{t: t, stream: st, resps: make(chan *discovery.DiscoveryResponse, 16), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				c.errs <- err
				return
			}
			c.resps <- r
		}
	}()
	return c
}

func (c *sotw) send(req *discovery.DiscoveryRequest) {
	c.t.Helper()
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *sotw) recv(typeURL string) *discovery.DiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.resps:
		if r.GetTypeUrl() != typeURL {
			c.t.Fatalf("got a %s response, want %s", r.GetTypeUrl(), typeURL)
		}
		return r
	case err := <-c.errs:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(5 * time.Second):
		c.t.Fatalf("no %s response", typeURL)
	}
	return nil
}

func (c *sotw) none(d time.Duration) {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.t.Fatalf("unexpected %s response, version %s", r.GetTypeUrl(), r.GetVersionInfo())
	case err := <-c.errs:
		c.t.Fatalf("stream ended: %v", err)
	case <-time.After(d):
	}
}

func mustPublish(t *testing.T, s *Server, set resourceSet) {
	t.Helper()
	if err := s.publish(context.Background(), set); err != nil {
		t.Fatal(err)
	}
}

func TestSOTWServesConfigAndEndpointChurnPushesEDSOnly(t *testing.T) {
	h := start(t, Options{})
	mustPublish(t, h.srv, gateway(t, 9001))
	c := h.sotw(t)

	c.send(&discovery.DiscoveryRequest{Node: node("helix"), TypeUrl: resourcev3.ClusterType})
	cds := c.recv(resourcev3.ClusterType)
	if len(cds.GetResources()) != 1 {
		t.Fatalf("CDS has %d clusters, want 1", len(cds.GetResources()))
	}
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: cds.GetVersionInfo(), ResponseNonce: cds.GetNonce()})
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"simple"}})
	eds := c.recv(resourcev3.EndpointType)
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"simple"}, VersionInfo: eds.GetVersionInfo(), ResponseNonce: eds.GetNonce()})
	c.none(200 * time.Millisecond)

	before := h.srv.Status()
	mustPublish(t, h.srv, gateway(t, 9001, 9002)) // a second worker
	eds2 := c.recv(resourcev3.EndpointType)
	if eds2.GetVersionInfo() == eds.GetVersionInfo() {
		t.Fatal("EDS version did not change")
	}
	c.none(200 * time.Millisecond) // and no CDS
	after := h.srv.Status()
	if after.Versions[CacheConfig] != before.Versions[CacheConfig] {
		t.Fatalf("config version changed on an endpoint change: %+v -> %+v", before.Versions[CacheConfig], after.Versions[CacheConfig])
	}
	if after.Versions[CacheEndpoints].Generation != 2 {
		t.Fatalf("endpoints generation = %d, want 2", after.Versions[CacheEndpoints].Generation)
	}
	if len(after.Nodes) != 1 || after.Nodes[0].ID != "envoy-1" || after.Nodes[0].Acked["cluster"] != cds.GetVersionInfo() {
		t.Fatalf("nodes = %+v", after.Nodes)
	}
	if got := testutil.ToFloat64(h.srv.metrics.connected); got != 1 {
		t.Fatalf("connected = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(h.srv.metrics.pushLatency); n == 0 {
		t.Fatal("no push latency observed for the ACKs")
	}
}

func TestNACKKeepsLastConfigWithoutResending(t *testing.T) {
	h := start(t, Options{})
	mustPublish(t, h.srv, gateway(t, 9001))
	c := h.sotw(t)
	c.send(&discovery.DiscoveryRequest{Node: node("helix"), TypeUrl: resourcev3.ClusterType})
	good := c.recv(resourcev3.ClusterType)
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: good.GetVersionInfo(), ResponseNonce: good.GetNonce()})

	// A config Envoy will refuse (the test plays Envoy and refuses it).
	bad := gateway(t, 9001)
	bad[resourcev3.ClusterType] = []types.Resource{edsCluster("simple", 2*time.Second)}
	mustPublish(t, h.srv, bad)
	rejected := c.recv(resourcev3.ClusterType)
	c.send(&discovery.DiscoveryRequest{
		TypeUrl: resourcev3.ClusterType, VersionInfo: good.GetVersionInfo(), ResponseNonce: rejected.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "cluster simple: bad timeout"},
	})
	// go-control-plane alone would answer the NACK with the same config.
	c.none(500 * time.Millisecond)

	st := h.srv.Status()
	if st.NACKs != 1 || st.LastNACK == nil {
		t.Fatalf("status = %+v", st)
	}
	if n := st.LastNACK; n.Type != "cluster" || n.Version != rejected.GetVersionInfo() || !strings.Contains(n.Message, "bad timeout") || n.Node != "envoy-1" {
		t.Fatalf("last NACK = %+v", n)
	}
	if got := testutil.ToFloat64(h.srv.metrics.nacks.WithLabelValues("cluster")); got != 1 {
		t.Fatalf("helix_xds_nacks_total{type=cluster} = %v", got)
	}
	if st.Nodes[0].Acked["cluster"] != good.GetVersionInfo() {
		t.Fatalf("acked = %v, want the good version %s", st.Nodes[0].Acked, good.GetVersionInfo())
	}

	// New inputs: a new version goes out.
	fixed := gateway(t, 9001)
	fixed[resourcev3.ClusterType] = []types.Resource{edsCluster("simple", 3*time.Second)}
	mustPublish(t, h.srv, fixed)
	next := c.recv(resourcev3.ClusterType)
	if next.GetVersionInfo() == rejected.GetVersionInfo() || next.GetVersionInfo() == good.GetVersionInfo() {
		t.Fatalf("version %s is not new", next.GetVersionInfo())
	}
}

func TestPublishRefusesBadResources(t *testing.T) {
	named := func(n string) *cluster.Cluster { c := edsCluster("simple", time.Second); c.Name = n; return c }
	tests := []struct {
		name   string
		mutate func(resourceSet)
		want   error
	}{
		{"cluster without name", func(s resourceSet) { s[resourcev3.ClusterType] = []types.Resource{named("")} }, ErrInvalidResource},
		{"duplicate cluster", func(s resourceSet) {
			s[resourcev3.ClusterType] = []types.Resource{named("simple"), named("simple")}
		}, ErrInvalidResource},
		{"wrong type in list", func(s resourceSet) { s[resourcev3.ClusterType] = []types.Resource{assignment("simple")} }, ErrInvalidResource},
		{"nil resource", func(s resourceSet) { s[resourcev3.RouteType] = []types.Resource{nil} }, ErrInvalidResource},
		{"EDS cluster without assignment", func(s resourceSet) { s[resourcev3.EndpointType] = nil }, ErrInconsistent},
		{"assignment nobody uses", func(s resourceSet) {
			s[resourcev3.EndpointType] = append(s[resourcev3.EndpointType], assignment("orphan"))
		}, ErrInconsistent},
		{"listener refers to a missing route", func(s resourceSet) { s[resourcev3.RouteType] = nil }, ErrInconsistent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, Options{})
			mustPublish(t, h.srv, gateway(t, 9001))
			before := h.srv.Status().Versions
			set := gateway(t, 9001)
			tt.mutate(set)
			err := h.srv.publish(context.Background(), set)
			if !errors.Is(err, tt.want) {
				t.Fatalf("publish = %v, want %v", err, tt.want)
			}
			after := h.srv.Status().Versions
			for k := range before {
				if before[k] != after[k] {
					t.Fatalf("%s changed after a refused publish: %+v -> %+v", k, before[k], after[k])
				}
			}
			if got := testutil.ToFloat64(h.srv.metrics.publishErrors); got != 1 {
				t.Fatalf("publish errors = %v", got)
			}
		})
	}
}

func TestPublishUnchangedKeepsVersions(t *testing.T) {
	h := start(t, Options{})
	mustPublish(t, h.srv, gateway(t, 9001))
	first := h.srv.Status().Versions
	mustPublish(t, h.srv, gateway(t, 9001))
	second := h.srv.Status().Versions
	for k, v := range first {
		if second[k] != v {
			t.Fatalf("%s: %+v -> %+v", k, v, second[k])
		}
	}
	// Order of resources does not matter.
	a := gateway(t, 9001)
	a[resourcev3.ClusterType] = []types.Resource{edsCluster("simple", time.Second), edsCluster("other", time.Second)}
	a[resourcev3.EndpointType] = []types.Resource{assignment("simple", 9001), assignment("other")}
	b := gateway(t, 9001)
	b[resourcev3.ClusterType] = []types.Resource{edsCluster("other", time.Second), edsCluster("simple", time.Second)}
	b[resourcev3.EndpointType] = []types.Resource{assignment("other"), assignment("simple", 9001)}
	mustPublish(t, h.srv, a)
	va := h.srv.Status().Versions
	mustPublish(t, h.srv, b)
	if vb := h.srv.Status().Versions; vb[CacheConfig] != va[CacheConfig] || vb[CacheEndpoints] != va[CacheEndpoints] {
		t.Fatalf("reordering changed versions: %+v -> %+v", va, vb)
	}
}

func TestDeltaServesAndCountsNACKs(t *testing.T) {
	h := start(t, Options{})
	mustPublish(t, h.srv, gateway(t, 9001))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(h.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node("helix"), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetName() != "simple" {
		t.Fatalf("delta CDS = %v", resp.GetResources())
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{
		TypeUrl: resourcev3.ClusterType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "nope"},
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.srv.Status().NACKs == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s := h.srv.Status()
	if s.NACKs != 1 || s.LastNACK.Version != resp.GetSystemVersionInfo() || s.LastNACK.Message == "" {
		t.Fatalf("status after delta NACK = %+v (response version %q)", s, resp.GetSystemVersionInfo())
	}
	if len(s.Nodes) != 1 || !s.Nodes[0].Delta {
		t.Fatalf("nodes = %+v", s.Nodes)
	}
}

func TestRefusesOtherNodeCluster(t *testing.T) {
	h := start(t, Options{NodeCluster: "helix"})
	mustPublish(t, h.srv, gateway(t, 9001))
	c := h.sotw(t)
	c.send(&discovery.DiscoveryRequest{Node: node("someone-else"), TypeUrl: resourcev3.ClusterType})
	select {
	case err := <-c.errs:
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("stream ended with %v, want PermissionDenied", err)
		}
	case r := <-c.resps:
		t.Fatalf("served %s to a foreign node cluster", r.GetTypeUrl())
	case <-time.After(5 * time.Second):
		t.Fatal("stream not refused")
	}
	// The right cluster is served.
	ok := h.sotw(t)
	ok.send(&discovery.DiscoveryRequest{Node: node("helix"), TypeUrl: resourcev3.ClusterType})
	ok.recv(resourcev3.ClusterType)
}

func TestStatusHandler(t *testing.T) {
	h := start(t, Options{})
	mustPublish(t, h.srv, gateway(t, 9001))
	rec := httptest.NewRecorder()
	h.srv.StatusHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status = %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	var got Status
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{CacheConfig, CacheEndpoints, CacheSecrets} {
		if got.Versions[c].Version == "" || got.Versions[c].Generation != 1 {
			t.Fatalf("versions[%s] = %+v", c, got.Versions[c])
		}
	}
	if got.Versions[CacheConfig].Resources != 3 {
		t.Fatalf("config resources = %d, want 3", got.Versions[CacheConfig].Resources)
	}
	rec = httptest.NewRecorder()
	h.srv.StatusHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/status", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /status = %d", rec.Code)
	}
}

// helix-ratelimit is retired (helix-authz decides rate limits): a set
// holding a ratelimit config is refused as a type helix-xds does not
// serve, and the last published snapshot stays in force.
func TestRefusesRateLimitConfig(t *testing.T) {
	h := start(t, Options{NodeCluster: "helix"})
	set := gateway(t, 9001)
	set[resourcev3.RateLimitConfigType] = []types.Resource{&rlsconfv3.RateLimitConfig{Name: "helixflow", Domain: "helixflow"}}
	if err := h.srv.publish(t.Context(), set); !errors.Is(err, ErrInvalidResource) {
		t.Fatalf("publish with a ratelimit config = %v, want ErrInvalidResource", err)
	}
}

// An Envoy that reconnects to a restarted helix-xds holding what it will
// publish gets no response; its request is its acknowledgement.
func TestReconnectHoldingTheCurrentVersionCountsAsAcked(t *testing.T) {
	// Versions are content hashes: what a first server published, a
	// restarted one publishes again under the same version.
	first := start(t, Options{})
	mustPublish(t, first.srv, gateway(t, 9001))
	version := first.srv.Status().Versions[CacheConfig].Version

	h := start(t, Options{})
	c := h.sotw(t)
	// Envoy asks before the restarted server publishes (its startup grace).
	c.send(&discovery.DiscoveryRequest{Node: node("helix"), TypeUrl: resourcev3.ClusterType, VersionInfo: version})
	time.Sleep(100 * time.Millisecond)
	mustPublish(t, h.srv, gateway(t, 9001))
	c.none(300 * time.Millisecond)
	nodes := h.srv.Status().Nodes
	if len(nodes) != 1 || nodes[0].Acked["cluster"] != version {
		t.Fatalf("status nodes = %+v, want cluster acked at %s", nodes, version)
	}
}
