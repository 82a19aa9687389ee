package server

import (
	"errors"
	"slices"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/xds/translate"
)

// Publish hashes only the resources it has not published before (by
// identity: resources are immutable once translated), so that one
// worker's change costs the hashing of its pools' assignments, not of
// every resource of a 1,000-model gateway. A new resource is hashed,
// whatever its name.
func TestPublishHashesOnlyNewResources(t *testing.T) {
	srv, err := New(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(fullGateway(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Publish(t.Context(), res); err != nil {
		t.Fatal(err)
	}
	edsVersion := func() string { return srv.Status().Versions[CacheEndpoints].Version }
	first := edsVersion()

	// The assignments again, one of them a copy (so the type is hashed
	// again), with the digest remembered for another falsified: a Publish
	// that hashed that one again would not see the falsification, one that
	// reuses it publishes another version.
	cla := res.Endpoints[0]
	srv.pubMu.Lock()
	known, ok := srv.sums[cla]
	srv.sums[cla] = sum{1}
	srv.pubMu.Unlock()
	if !ok {
		t.Fatalf("no digest remembered for the published assignment %q", cla.(*endpointv3.ClusterLoadAssignment).GetClusterName())
	}
	again := *res
	again.Endpoints = slices.Clone(res.Endpoints)
	again.Endpoints[1] = proto.Clone(res.Endpoints[1])
	if err := srv.Publish(t.Context(), &again); err != nil {
		t.Fatal(err)
	}
	if edsVersion() == first {
		t.Fatal("the same resources were hashed again (the remembered digest was not used)")
	}

	// A copy (a new resource, equal content) is hashed: the first version.
	srv.pubMu.Lock()
	srv.sums[cla] = known
	srv.pubMu.Unlock()
	copied := *res
	copied.Endpoints = slices.Clone(res.Endpoints)
	copied.Endpoints[0] = proto.Clone(cla)
	if err := srv.Publish(t.Context(), &copied); err != nil {
		t.Fatal(err)
	}
	if got := edsVersion(); got != first {
		t.Fatalf("a copy of equal content published version %s, want %s", got, first)
	}
	// A changed copy is a new version.
	changed := proto.Clone(cla.(*endpointv3.ClusterLoadAssignment)).(*endpointv3.ClusterLoadAssignment)
	changed.Endpoints = nil
	copied.Endpoints = slices.Clone(copied.Endpoints)
	copied.Endpoints[0] = changed
	if err := srv.Publish(t.Context(), &copied); err != nil {
		t.Fatal(err)
	}
	if edsVersion() == first {
		t.Fatal("a changed assignment kept the version")
	}
}

// A publish whose clusters, listeners and routes are the last one's (the
// same resources) still checks that the assignments' names match the
// clusters: the shortcut applies only when those names are unchanged.
func TestPublishChecksAssignmentNamesWhenOnlyThemChange(t *testing.T) {
	srv, err := New(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(fullGateway(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Publish(t.Context(), res); err != nil {
		t.Fatal(err)
	}
	renamed := *res
	renamed.Endpoints = slices.Clone(res.Endpoints)
	cla := proto.Clone(res.Endpoints[0]).(*endpointv3.ClusterLoadAssignment)
	cla.ClusterName = "no-such-cluster"
	renamed.Endpoints[0] = cla
	if err := srv.Publish(t.Context(), &renamed); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("an assignment no cluster asks for: %v, want ErrInconsistent", err)
	}
	// Resources published before are trusted (immutable): the same set
	// again passes without being checked again, and changes nothing.
	version := srv.Status().Versions[CacheConfig].Version
	if err := srv.Publish(t.Context(), res); err != nil {
		t.Fatal(err)
	}
	if got := srv.Status().Versions[CacheConfig].Version; got != version {
		t.Fatalf("the same set again: config version %s, want %s", got, version)
	}
}
