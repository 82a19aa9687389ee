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
// Each Publish checks only what the set as a whole must be (every resource
// of its type's message, with a non-empty name unique within its type;
// each resource's content is the translator's to check, which it does with
// ValidateAll as it builds them), assembles one snapshot of all types and
// checks Snapshot.Consistent() on it (EDS names = clusters' EDS references, RDS
// names = listeners' references) before any cache changes; then it sets
// secrets, endpoints and config, in that order, so that what a new cluster
// or listener refers to is there when Envoy asks for it (and in steps when
// clusters come or go, see below). A cache's version is a hash of those
// digests: publishing unchanged inputs changes nothing, and a restarted
// helix-xds that rebuilds the same config offers Envoy the version it
// already has.
//
// # Make before break
//
// Envoy answers 503 at once, with no body, for a route naming a cluster it
// does not have: one just added is unusable until its endpoints arrive
// (warming), and ADS delivers routes right behind clusters. So a Publish
// that adds or removes clusters goes in steps (warm.go): new clusters
// beside the old routes until every running Envoy has taken them and
// acknowledged their endpoints and secrets; then, when clusters go, the
// new routes beside the old clusters until acknowledged; then the new set.
// The stream callbacks keep, per stream and type, the names subscribed and
// the last response sent and acknowledged; a step waits on them, for at
// most Options.WarmTimeout. Endpoint-only changes, the usual churn, take no
// step. Versions are content hashes and a bridge can repeat an earlier
// version, so a step counts only the acknowledgement of the last response.
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
