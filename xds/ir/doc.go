// Package ir is the internal model of the HelixFlow gateway: what Envoy
// should do, without any Envoy type. Inputs (the gateway config file in
// xds/config, the worker registry, Kubernetes EndpointSlices) fill a
// Gateway; xds/translate turns a valid Gateway into Envoy resources.
//
// Contract for producers:
//   - Build a Gateway from the config (config.Config.Gateway) and set
//     Pools and DefaultPool from the worker source: one Pool per model,
//     with every worker that has the model loaded (Ready says whether it
//     may take traffic now), and DefaultPool holding every worker once.
//   - Call Validate before publishing. Errors name the field, for example
//     "pools[3].endpoints[0].port: must be 1..65535"; they wrap ErrInvalid.
//   - Plaintext is allowed only on loopback: a Listener without TLS must
//     bind a loopback address, and without Workers TLS every endpoint
//     must be a loopback address (a registry should refuse such a worker
//     rather than let one bad registration block every update).
//   - A pool's traffic policy (Pool.Traffic) must be valid
//     (ValidateTraffic) and able to apply to the pool now
//     (Pool.TrafficInactive empty: not a sequence pool, a ready endpoint
//     for each variant with weight > 0; Variant.Matches says which).
//     Validate refuses it otherwise; xds/builder leaves such a policy off
//     the pool and reports it instead.
//   - Order does not matter: Sort (or translate, which sorts a copy) puts
//     pools, endpoints and versions in a fixed order so that the output is
//     stable.
//
// Durations of zero mean "use the default" except Timeouts.Stream, where
// zero means "no limit" (a ModelStreamInfer stream lives as long as the
// client keeps it). ApplyDefaults fills the defaults.
package ir
