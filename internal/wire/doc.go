// Package wire holds what HelixFlow's services agree on across a process
// boundary: which model and version names exist, the headers helix-authz
// sets and Envoy routes by, and the KServe v2 paths.
//
// Each rule is defined here once and imported by every side of the
// boundary, so they cannot drift apart:
//
//   - names (names.go): the model and version names Envoy routes and
//     helix-authz authorizes (extauthz/check); the worker registry
//     (xds/registry), the Kubernetes source (xds/kube), the gateway model
//     (xds/ir) and the worker's model repository (workers/repository)
//     refuse any other, so no worker can announce a model the gateway
//     cannot route.
//   - headers (headers.go): the x-helix-* headers helix-authz sets and
//     Envoy strips from clients (xds/translate), and helix-model, the
//     header a client names its stream's model in.
//   - paths (paths.go): the gRPC service prefix and the KServe v2 REST
//     paths, with one builder (xds/translate's route matchers and health
//     checks) and one parser (helix-authz and the worker's REST server),
//     so both read the same model from a path.
package wire
