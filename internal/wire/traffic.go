package wire

import (
	"hash/fnv"
	"strconv"
)

// Traffic policies (A/B tests, canaries, shadows; docs/rollouts.md): the
// headers helix-authz, Envoy's routes (helix-xds) and the workers agree on.
// Every x-helix-* one is set by the gateway only: a client-sent one is
// stripped like every HeaderPrefix header.
const (
	// HeaderVariantRequest is the header a client sends to pick a variant
	// of a model's traffic policy by name, for testing ("helix-variant:
	// canary"). helix-authz honours it only for a credential holding
	// ScopeVariantOverride and refuses the request otherwise (deny rather
	// than ignore: a tester must not believe they reached a variant).
	HeaderVariantRequest = "helix-variant"
	// HeaderVariant is the variant helix-authz admitted from
	// HeaderVariantRequest; Envoy routes the request to that variant.
	HeaderVariant = "x-helix-variant"
	// HeaderAssignment is the sticky assignment of a request: decimal
	// AssignmentValue of its client and model. Envoy's weighted clusters of a
	// sticky policy take it as their random value, so that one client sees
	// one variant for as long as the weights stay.
	HeaderAssignment = "x-helix-assignment"
	// HeaderRequestedVersion is the version a request names (gRPC
	// ModelInferRequest.model_version, REST /versions/{v}), set by
	// helix-authz so that Envoy can route a versioned gRPC request (whose
	// version is in its body) to workers that have that version.
	HeaderRequestedVersion = "x-helix-requested-version"
	// HeaderModelVersion is the version a variant's route chose for a
	// request that names none; the worker serves that version and says so
	// in the answer's model_version. A request naming a version keeps it.
	HeaderModelVersion = "x-helix-model-version"
	// HeaderShadow is "1" on a request Envoy mirrored to a shadow variant:
	// the worker serves it but counts no usage and spends no limit, and
	// nobody reads its answer.
	HeaderShadow = "x-helix-shadow"
)

// ScopeVariantOverride lets a credential pick a variant with
// HeaderVariantRequest.
const ScopeVariantOverride = "models:variant-override"

// AssignmentValue is HeaderAssignment's value for a client and a model:
// FNV-1a (64 bits) of client, a zero byte, model. Salting with the model
// keeps one client from landing in the low buckets of every experiment.
func AssignmentValue(client, model string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(client))
	h.Write([]byte{0})
	h.Write([]byte(model))
	return h.Sum64()
}

// AssignmentHeaderValue is AssignmentValue in HeaderAssignment's decimal
// form.
func AssignmentHeaderValue(client, model string) string {
	return strconv.FormatUint(AssignmentValue(client, model), 10)
}

// DefaultPool is the pool of a worker that names none.
const DefaultPool = "default"
