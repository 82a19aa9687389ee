// Package server is helix-xds's Aggregated Discovery Service: it serves the
// Envoy resources produced by xds/translate to every connected Envoy, over
// state-of-the-world and delta ADS, on a grpc.Server the caller owns (and
// secures with mTLS).
//
// # Caches
//
// Resources live in three go-control-plane snapshot caches behind one
// cache.MuxCache that splits requests by type URL:
//
//   - config: listeners, routes and clusters, in ADS mode so that responses
//     keep Envoy's order (CDS before LDS before RDS);
//   - endpoints: ClusterLoadAssignments, on their own version, so that worker
//     churn pushes EDS only and never rebuilds listeners or routes (the
//     approach of Contour);
//   - secrets: SDS secrets, on their own version as well. Envoy subscribes to
//     the secrets of clusters before those of listeners, and an ADS-mode cache
//     answers only requests that name every resource it holds, which would
//     leave clusters warming until the initial fetch timeout.
//
// Each Publish checks every resource (ValidateAll, non-empty unique names),
// assembles one snapshot of all types and checks Snapshot.Consistent() on it
// (EDS names = clusters' EDS references, RDS names = listeners' references)
// before any cache changes; then it sets secrets, endpoints and config, in
// that order, so that what a new cluster or listener refers to is there when
// Envoy asks for it. A cache's version is a hash of its content: publishing
// unchanged inputs changes nothing, and a restarted helix-xds that rebuilds
// the same config offers Envoy the version it already has.
//
// # Node ids
//
// Every Envoy gets the same snapshot: the caches key snapshots by a constant
// (allNodes), not by node id, so an Envoy is served whatever id its bootstrap
// gives it and no per-node bookkeeping can drift. Options.NodeCluster, when
// set, refuses streams from Envoys whose node cluster differs (a bootstrap
// pointed at the wrong control plane). Connected nodes are tracked from the
// stream callbacks and shown by Status.
//
// # NACKs
//
// Envoy rejects a config by sending a request that carries error_detail and
// the version it last accepted. The snapshot cache would treat that version
// mismatch as "client is behind" and resend the rejected config at once, in
// a loop. The stream callbacks log Envoy's message, count it
// (helix_xds_nacks_total{type}), remember it for Status, and rewrite the
// request's version to the rejected one, so the cache waits: Envoy keeps its
// last accepted config until a new version is published (inputs changed).
package server
