package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// makeBeforeBreak takes every connected Envoy from prev to next without a
// moment in which a route names a cluster the Envoy lacks: Envoy answers
// such a request 503 at once. A new EDS cluster is not usable until its
// endpoints have arrived (it warms), yet Envoy applies a route update as
// soon as it comes, and ADS sends routes right behind clusters; a removed
// cluster is gone before the routes that name it are replaced. So:
//
//  1. new clusters are added (old ones kept) under the old listeners and
//     routes, and publish waits until each Envoy has taken them and has
//     acknowledged their endpoints and secrets: they are warm;
//  2. when clusters go, the new listeners and routes are published with
//     the old clusters still there, and publish waits until each Envoy has
//     acknowledged them;
//
// then the caller publishes next itself. Envoys still starting are not
// waited for (Envoy's own initialisation orders clusters before
// listeners), nor, after Options.WarmTimeout, one that does not answer.
// An endpoint-only change takes neither step.
func (s *Server) makeBeforeBreak(ctx context.Context, prev, next resourceSet) error {
	if slices.Equal(prev[resourcev3.ClusterType], next[resourcev3.ClusterType]) {
		return nil // the same clusters: an endpoint-only change
	}
	added, removed := clusterChanges(prev[resourcev3.ClusterType], next[resourcev3.ClusterType])
	if len(added) == 0 && len(removed) == 0 || !s.envoysRunning() {
		return nil
	}
	bridge := resourceSet{
		resourcev3.ClusterType:  union(next[resourcev3.ClusterType], prev[resourcev3.ClusterType]),
		resourcev3.EndpointType: withEndpointsOf(next[resourcev3.EndpointType], prev[resourcev3.EndpointType], removed),
		resourcev3.SecretType:   union(next[resourcev3.SecretType], prev[resourcev3.SecretType]),
		resourcev3.ListenerType: prev[resourcev3.ListenerType],
		resourcev3.RouteType:    prev[resourcev3.RouteType],
	}
	if len(added) > 0 {
		warmNames := edsNames(added)
		// A cluster removed a moment ago and added back now: the Envoy may
		// not yet have said it dropped the cluster's endpoints. Added back
		// before it does, the drop and the new subscription cancel out in
		// what Envoy sends (delta), so nothing asks the server to resend
		// endpoints it thinks the Envoy has, and the cluster starves until
		// its initial fetch times out; and the wait below would pass on the
		// stale subscription and route to a cluster still warming. So the
		// drop is waited for first.
		err := s.waitEnvoys(ctx, fmt.Sprintf("endpoints of %d re-added cluster(s) to be dropped", len(added)), func(st *stream) bool {
			return !st.state(resourcev3.EndpointType).hasAny(warmNames)
		})
		if err != nil {
			return err
		}
		version, err := s.setBridge(ctx, bridge)
		if err != nil {
			return err
		}
		err = s.waitEnvoys(ctx, fmt.Sprintf("%d new cluster(s) to warm", len(added)), func(st *stream) bool {
			if !st.state(resourcev3.ClusterType).took(version) {
				return false
			}
			eds := st.state(resourcev3.EndpointType)
			return eds.has(warmNames) && eds.settled() && st.state(resourcev3.SecretType).idle()
		})
		if err != nil {
			return err
		}
	}
	var changedTypes []string
	for _, t := range []string{resourcev3.ListenerType, resourcev3.RouteType} {
		if !sameResources(prev[t], next[t]) {
			changedTypes = append(changedTypes, t)
		}
	}
	if len(removed) == 0 || len(changedTypes) == 0 {
		return nil
	}
	bridge[resourcev3.ListenerType] = next[resourcev3.ListenerType]
	bridge[resourcev3.RouteType] = next[resourcev3.RouteType]
	version, err := s.setBridge(ctx, bridge)
	if err != nil {
		return err
	}
	return s.waitEnvoys(ctx, fmt.Sprintf("routes off %d removed cluster(s)", len(removed)), func(st *stream) bool {
		for _, t := range changedTypes {
			if !st.state(t).took(version) {
				return false
			}
		}
		return true
	})
}

// setBridge publishes an intermediate set. Its resources passed Publish's
// checks already; only the consistency of the mix is checked (a failure
// would be a bug here).
func (s *Server) setBridge(ctx context.Context, bridge resourceSet) (string, error) {
	snap, err := cachev3.NewSnapshot("bridge", map[string][]types.Resource(bridge))
	if err == nil {
		err = snap.Consistent()
	}
	if err != nil {
		s.metrics.publishErrors.Inc()
		return "", fmt.Errorf("%w: make-before-break step: %w", ErrInconsistent, err)
	}
	digests, _, err := digestSet(bridge, s.sums)
	if err != nil {
		s.metrics.publishErrors.Inc()
		return "", err
	}
	return s.setCaches(ctx, bridge, digests)
}

// took: the last response sent was version and the node acknowledged it,
// or rejected it (it then keeps what it had; waiting changes nothing).
// Versions are content hashes and recur (a bridge may equal an earlier
// one), so only the last response counts.
func (ts *typeState) took(version string) bool {
	return ts.sentNonce != "" && ts.sentVersion == version &&
		(ts.ackedNonce == ts.sentNonce || ts.rejectedNonce == ts.sentNonce)
}

// idle: nothing sent of this type awaits the node's answer.
func (ts *typeState) idle() bool {
	return ts.sentNonce == "" && len(ts.names) == 0 || ts.settled()
}

// waiting lists the running Envoys for which ready does not hold yet; s.mu
// held. Running: it has acknowledged clusters before (one still starting
// is ordered by Envoy itself).
func (s *Server) waitingLocked(ready func(*stream) bool) []string {
	var ids []string
	for _, st := range s.streams {
		if st.nodeID == "" || st.state(resourcev3.ClusterType).acked == "" {
			continue
		}
		if !ready(st) {
			ids = append(ids, st.nodeID)
		}
	}
	slices.Sort(ids)
	return ids
}

func (s *Server) envoysRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waitingLocked(func(*stream) bool { return false })) > 0
}

// waitEnvoys blocks until ready holds for every running Envoy, or
// s.warmTimeout passes (logged; publishing goes on), or ctx ends.
func (s *Server) waitEnvoys(ctx context.Context, what string, ready func(*stream) bool) error {
	start := time.Now()
	timer := time.NewTimer(s.warmTimeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		waiting := s.waitingLocked(ready)
		changed := s.changed
		s.mu.Unlock()
		if len(waiting) == 0 {
			s.log.Debug("make-before-break step done", "waited_for", what, "took", time.Since(start))
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			s.log.Warn("Envoys did not confirm a make-before-break step in time; publishing on (they may answer 503 for a moment)",
				"waited_for", what, "timeout", s.warmTimeout, "envoys", waiting)
			return nil
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// clusterChanges names the clusters only in next (added) and those only
// in prev (removed).
func clusterChanges(prev, next []types.Resource) (added, removed []types.Resource) {
	inPrev, inNext := names(prev), names(next)
	for _, r := range next {
		if !inPrev[cachev3.GetResourceName(r)] {
			added = append(added, r)
		}
	}
	for _, r := range prev {
		if !inNext[cachev3.GetResourceName(r)] {
			removed = append(removed, r)
		}
	}
	return added, removed
}

func names(rs []types.Resource) map[string]bool {
	m := make(map[string]bool, len(rs))
	for _, r := range rs {
		m[cachev3.GetResourceName(r)] = true
	}
	return m
}

// union is a, plus the resources of b whose names a lacks.
func union(a, b []types.Resource) []types.Resource {
	out := slices.Clip(a)
	inA := names(a)
	for _, r := range b {
		if !inA[cachev3.GetResourceName(r)] {
			out = append(out, r)
		}
	}
	return out
}

// withEndpointsOf is next's assignments plus prev's for the removed EDS
// clusters, which a bridge still holds.
func withEndpointsOf(next, prev, removed []types.Resource) []types.Resource {
	keep := map[string]bool{}
	for _, n := range edsNames(removed) {
		keep[n] = true
	}
	inNext := names(next)
	out := slices.Clip(next)
	for _, r := range prev {
		if n := cachev3.GetResourceName(r); keep[n] && !inNext[n] {
			out = append(out, r)
		}
	}
	return out
}

// edsNames are the assignment names the EDS clusters among cs ask for.
func edsNames(cs []types.Resource) []string {
	var out []string
	for _, r := range cs {
		c, ok := r.(*cluster.Cluster)
		if !ok || c.GetType() != cluster.Cluster_EDS {
			continue
		}
		if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
			out = append(out, n)
		} else {
			out = append(out, c.GetName())
		}
	}
	return out
}

// sameResources: a and b hold equal resources under the same names.
func sameResources(a, b []types.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	byName := make(map[string]types.Resource, len(b))
	for _, r := range b {
		byName[cachev3.GetResourceName(r)] = r
	}
	for _, r := range a {
		o, ok := byName[cachev3.GetResourceName(r)]
		if !ok || !proto.Equal(r, o) {
			return false
		}
	}
	return true
}
