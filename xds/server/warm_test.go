package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/helixflow/helixflow/envoy/envoytest"
)

// modelRoutes is a gateway on port with one route and one EDS cluster per
// model (path /m/{model}/ to cluster model-{model}, whose one endpoint is
// backendPort), and a catch-all answering 404 "no route".
func modelRoutes(t *testing.T, port, backendPort uint32, models ...string) resourceSet {
	t.Helper()
	lis := routedListener(t, port)
	vh := &route.VirtualHost{Name: "all", Domains: []string{"*"}}
	set := resourceSet{resourcev3.ListenerType: {lis}}
	for _, m := range models {
		name := "model-" + m
		vh.Routes = append(vh.Routes, &route.Route{
			Match:  &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/m/" + m + "/"}},
			Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: name}}},
		})
		set[resourcev3.ClusterType] = append(set[resourcev3.ClusterType], edsCluster(name, time.Second))
		set[resourcev3.EndpointType] = append(set[resourcev3.EndpointType], assignment(name, backendPort))
	}
	vh.Routes = append(vh.Routes, &route.Route{
		Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
		Action: &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{
			Status: http.StatusNotFound, Body: &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: "no route"}},
		}},
	})
	set[resourcev3.RouteType] = []types.Resource{&route.RouteConfiguration{Name: "rc", VirtualHosts: []*route.VirtualHost{vh}}}
	return set
}

// A model that comes and goes under load: while Envoy is asked for it
// without pause, every answer is the model's (200) or the catch-all's
// (404), never Envoy's 503 for a route whose cluster it does not have yet
// (a new cluster warms until its endpoints arrive) or any more (a removed
// one). Routes must follow new clusters and precede removed ones.
func TestModelsComeAndGoWithoutErrors(t *testing.T) {
	envoytest.Binary(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "model") }))
	t.Cleanup(backend.Close)
	_, portStr, err := net.SplitHostPort(backend.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	bp, err := strconv.ParseUint(portStr, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	backendPort := uint32(bp)

	for _, delta := range []bool{false, true} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			h := start(t, Options{NodeCluster: "helix"})
			path := envoyBootstrap(t, h.srv, delta)
			port := freePort(t)
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			mustPublish(t, h.srv, modelRoutes(t, port, backendPort, "a"))
			startLive(t, path)
			eventually(t, "model a served", 10*time.Second, func() (bool, string) {
				body, err := get(t, base+"/m/a/")
				return body == "model", fmt.Sprint(body, err)
			})

			// Ask for b without pause from a few clients while b comes and
			// goes.
			var (
				stop           atomic.Bool
				wg             sync.WaitGroup
				served, absent atomic.Int64
				badMu          sync.Mutex
				bad            []string
			)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := &http.Client{Timeout: 2 * time.Second}
					for !stop.Load() {
						resp, err := c.Get(base + "/m/b/")
						if err != nil {
							badMu.Lock()
							bad = append(bad, err.Error())
							badMu.Unlock()
							continue
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						switch {
						case resp.StatusCode == http.StatusOK && string(body) == "model":
							served.Add(1)
						case resp.StatusCode == http.StatusNotFound && string(body) == "no route":
							absent.Add(1)
						default:
							badMu.Lock()
							bad = append(bad, fmt.Sprintf("%d %q", resp.StatusCode, body))
							badMu.Unlock()
						}
					}
				}()
			}
			const cycles = 8
			for i := range cycles {
				mustPublish(t, h.srv, modelRoutes(t, port, backendPort, "a", "b"))
				eventually(t, fmt.Sprintf("cycle %d: b served", i), 10*time.Second, func() (bool, string) {
					body, err := get(t, base+"/m/b/")
					return body == "model", fmt.Sprint(body, err)
				})
				mustPublish(t, h.srv, modelRoutes(t, port, backendPort, "a"))
				eventually(t, fmt.Sprintf("cycle %d: b gone", i), 10*time.Second, func() (bool, string) {
					body, err := get(t, base+"/m/b/")
					return body == "no route", fmt.Sprint(body, err)
				})
			}
			stop.Store(true)
			wg.Wait()
			t.Logf("%d cycles: %d answers from b, %d from the catch-all", cycles, served.Load(), absent.Load())
			if len(bad) > 0 {
				t.Fatalf("%d of %d answers were neither b's nor the catch-all's; first: %s",
					len(bad), int64(len(bad))+served.Load()+absent.Load(), bad[0])
			}
		})
	}
}

// twoModels is gateway plus a second model, "other", on port 9100.
func twoModels(t *testing.T, ports ...uint32) resourceSet {
	set := gateway(t, ports...)
	set[resourcev3.RouteType] = []types.Resource{routeConfig("rc", "simple", "other")}
	set[resourcev3.ClusterType] = append(set[resourcev3.ClusterType], edsCluster("other", time.Second))
	set[resourcev3.EndpointType] = append(set[resourcev3.EndpointType], assignment("other", 9100))
	return set
}

// envoyOnCDSAndEDS plays a running Envoy: it has taken the clusters and
// endpoints of what is published and returns the last EDS response.
func envoyOnCDSAndEDS(t *testing.T, h *harness) (*sotw, *discovery.DiscoveryResponse) {
	t.Helper()
	c := h.sotw(t)
	c.send(&discovery.DiscoveryRequest{Node: node("helix"), TypeUrl: resourcev3.ClusterType})
	cds := c.recv(resourcev3.ClusterType)
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: cds.GetVersionInfo(), ResponseNonce: cds.GetNonce()})
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"simple"}})
	eds := c.recv(resourcev3.EndpointType)
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"simple"}, VersionInfo: eds.GetVersionInfo(), ResponseNonce: eds.GetNonce()})
	c.none(100 * time.Millisecond)
	return c, eds
}

// recvBoth takes the EDS and the CDS response a publish of new clusters
// and endpoints sends, in either order.
func (c *sotw) recvBoth() (eds, cds *discovery.DiscoveryResponse) {
	c.t.Helper()
	for eds == nil || cds == nil {
		select {
		case r := <-c.resps:
			switch r.GetTypeUrl() {
			case resourcev3.EndpointType:
				eds = r
			case resourcev3.ClusterType:
				cds = r
			default:
				c.t.Fatalf("unexpected %s response", r.GetTypeUrl())
			}
		case err := <-c.errs:
			c.t.Fatalf("stream ended: %v", err)
		case <-time.After(5 * time.Second):
			c.t.Fatalf("no EDS and CDS responses (EDS %v, CDS %v)", eds != nil, cds != nil)
		}
	}
	return eds, cds
}

func publishAsync(h *harness, set resourceSet) <-chan error {
	done := make(chan error, 1)
	go func() { done <- h.srv.publish(context.Background(), set) }()
	return done
}

func clusterNames(t *testing.T, r *discovery.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		var c cluster.Cluster
		if err := a.UnmarshalTo(&c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c.GetName())
	}
	slices.Sort(out)
	return out
}

// A publish that adds a cluster first serves it beside the old routes,
// and goes on only once the Envoy has asked for its endpoints and
// acknowledged them.
func TestPublishWaitsForNewClustersToWarm(t *testing.T) {
	h := start(t, Options{})
	mustPublish(t, h.srv, gateway(t, 9001))
	c, _ := envoyOnCDSAndEDS(t, h)

	done := publishAsync(h, twoModels(t, 9001))
	eds, bridge := c.recvBoth() // EDS: the old names, at the new version
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"simple"}, VersionInfo: eds.GetVersionInfo(), ResponseNonce: eds.GetNonce()})
	if got := clusterNames(t, bridge); !slices.Equal(got, []string{"other", "simple"}) {
		t.Fatalf("bridge clusters = %v", got)
	}
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: bridge.GetVersionInfo(), ResponseNonce: bridge.GetNonce()})
	select {
	case err := <-done:
		t.Fatalf("publish returned (%v) before the new cluster's endpoints were taken", err)
	case <-time.After(200 * time.Millisecond):
	}
	// The new cluster asks for its endpoints (stating the version it has,
	// as Envoy does), gets them and acknowledges them.
	names := []string{"simple", "other"}
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: names, VersionInfo: eds.GetVersionInfo(), ResponseNonce: eds.GetNonce()})
	eds2 := c.recv(resourcev3.EndpointType)
	if len(eds2.GetResources()) != 2 {
		t.Fatalf("EDS for the bridge has %d assignments, want 2", len(eds2.GetResources()))
	}
	c.send(&discovery.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: names, VersionInfo: eds2.GetVersionInfo(), ResponseNonce: eds2.GetNonce()})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("publish still waiting after the new cluster warmed")
	}
	final := c.recv(resourcev3.ClusterType)
	if final.GetVersionInfo() == bridge.GetVersionInfo() || h.srv.Status().Versions[CacheConfig].Version != final.GetVersionInfo() {
		t.Fatalf("after the bridge (%s), CDS %s, published %+v", bridge.GetVersionInfo(), final.GetVersionInfo(), h.srv.Status().Versions[CacheConfig])
	}
}

// An Envoy that never acknowledges holds a publish up for WarmTimeout
// only; an endpoint-only change does not wait at all.
func TestPublishGoesOnWithoutAnEnvoyThatDoesNotAnswer(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := start(t, Options{WarmTimeout: timeout})
	mustPublish(t, h.srv, gateway(t, 9001))
	c, _ := envoyOnCDSAndEDS(t, h)

	began := time.Now()
	mustPublish(t, h.srv, twoModels(t, 9001)) // the bridge is never acknowledged
	if took := time.Since(began); took < timeout || took > timeout+2*time.Second {
		t.Fatalf("publish took %v, want about the warm timeout %v", took, timeout)
	}
	if _, cds := c.recvBoth(); !slices.Equal(clusterNames(t, cds), []string{"other", "simple"}) {
		t.Fatalf("bridge clusters = %v", clusterNames(t, cds))
	}
	began = time.Now()
	mustPublish(t, h.srv, twoModels(t, 9001, 9002))
	if took := time.Since(began); took >= timeout {
		t.Fatalf("an endpoint-only publish took %v", took)
	}
}

func TestTypeStateBookkeeping(t *testing.T) {
	ts := &typeState{names: map[string]bool{}}
	ts.apply(subscription{sotw: true, names: []string{"a"}})
	ts.sentNonce, ts.sentVersion, ts.sentSubscription = "1", "v1", ts.subscription
	if ts.settled() {
		t.Fatal("settled before the ACK")
	}
	ts.ackedNonce = "1"
	if !ts.settled() || !ts.took("v1") || ts.took("v2") {
		t.Fatalf("after the ACK: settled %v, took v1 %v, took v2 %v", ts.settled(), ts.took("v1"), ts.took("v2"))
	}
	// The same names again are no change; new ones unsettle until a
	// response reflecting them is acknowledged.
	ts.apply(subscription{sotw: true, names: []string{"a"}})
	if !ts.settled() {
		t.Fatal("an unchanged subscription unsettled the type")
	}
	ts.apply(subscription{sotw: true, names: []string{"a", "b"}})
	if ts.settled() || !ts.has([]string{"a", "b"}) {
		t.Fatalf("after subscribing b: settled %v, names %v", ts.settled(), ts.names)
	}
	// A version sent again later (versions are content hashes) is taken
	// only once its own response is acknowledged.
	ts.sentNonce, ts.sentVersion, ts.sentSubscription = "2", "v2", ts.subscription
	ts.ackedNonce = "2"
	ts.sentNonce, ts.sentVersion = "3", "v1"
	if ts.took("v1") {
		t.Fatal("took v1 on the strength of an earlier ACK")
	}
	ts.rejectedNonce = "3"
	if !ts.took("v1") {
		t.Fatal("a rejected version counts as taken (the node keeps its config)")
	}

	d := &typeState{names: map[string]bool{}}
	d.apply(subscription{subscribe: []string{"a", "b"}})
	d.apply(subscription{unsubscribe: []string{"a"}})
	if d.has([]string{"a"}) || !d.has([]string{"b"}) || d.subscription != 2 {
		t.Fatalf("delta names %v, subscription %d", d.names, d.subscription)
	}
	if !d.hasAny([]string{"a", "b"}) || d.hasAny([]string{"a", "c"}) || (&typeState{}).hasAny([]string{"a"}) {
		t.Fatalf("hasAny over names %v (a wildcard subscription names none)", d.names)
	}
	d.apply(subscription{})
	if d.subscription != 2 {
		t.Fatal("an ACK without subscription changes counted as a change")
	}
}

func TestBridgeSets(t *testing.T) {
	prev, next := gateway(t, 9001), twoModels(t, 9001)
	added, removed := clusterChanges(prev[resourcev3.ClusterType], next[resourcev3.ClusterType])
	if len(added) != 1 || cachev3.GetResourceName(added[0]) != "other" || len(removed) != 0 {
		t.Fatalf("added %v, removed %v", added, removed)
	}
	added, removed = clusterChanges(next[resourcev3.ClusterType], prev[resourcev3.ClusterType])
	if len(added) != 0 || len(removed) != 1 {
		t.Fatalf("reversed: added %v, removed %v", added, removed)
	}
	if got := withEndpointsOf(prev[resourcev3.EndpointType], next[resourcev3.EndpointType], removed); len(got) != 2 {
		t.Fatalf("bridge endpoints = %d, want the removed cluster's kept", len(got))
	}
	if got := union(prev[resourcev3.ClusterType], next[resourcev3.ClusterType]); len(got) != 2 {
		t.Fatalf("union = %d clusters", len(got))
	}
	svc := edsCluster("pool", time.Second)
	svc.EdsClusterConfig.ServiceName = "pool-endpoints"
	if got := edsNames([]types.Resource{svc, edsCluster("x", time.Second)}); !slices.Equal(got, []string{"pool-endpoints", "x"}) {
		t.Fatalf("edsNames = %v", got)
	}
	if !sameResources(prev[resourcev3.RouteType], gateway(t, 9002)[resourcev3.RouteType]) ||
		sameResources(prev[resourcev3.RouteType], next[resourcev3.RouteType]) {
		t.Fatal("sameResources")
	}
}
