package wire

import (
	"errors"
	"fmt"
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
//
// Computed inline rather than with hash/fnv: Check sets it on every
// inference request, and hash/fnv's interface and []byte conversions cost
// allocations there (assignment_test.go checks both agree).
func AssignmentValue(client, model string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(client); i++ {
		h ^= uint64(client[i])
		h *= prime64
	}
	h *= prime64 // the zero byte: h ^= 0
	for i := 0; i < len(model); i++ {
		h ^= uint64(model[i])
		h *= prime64
	}
	return h
}

// AssignmentHeaderValue is AssignmentValue in HeaderAssignment's decimal
// form.
func AssignmentHeaderValue(client, model string) string {
	return strconv.FormatUint(AssignmentValue(client, model), 10)
}

// DefaultPool is the pool of a worker that names none.
const DefaultPool = "default"

// MaxPoolNameBytes and MaxVariantNameBytes bound a worker pool's and a
// traffic variant's name.
const (
	MaxPoolNameBytes    = 63
	MaxVariantNameBytes = 32
)

// ErrPoolName and ErrVariantName are wrapped by CheckPoolName's and
// CheckVariantName's errors.
var (
	ErrPoolName    = errors.New("not a valid pool name")
	ErrVariantName = errors.New("not a valid variant name")
)

// CheckPoolName returns nil if s can name a worker pool: 1 to 63 bytes of
// [a-z0-9-] (a Kubernetes label value and a metric label; the chart names
// its pools so). An empty pool, meaning DefaultPool, is the caller's to
// allow.
func CheckPoolName(s string) error {
	if err := checkLowerDash(s, MaxPoolNameBytes); err != "" {
		return fmt.Errorf("%w: %s", ErrPoolName, err)
	}
	return nil
}

// CheckVariantName returns nil if s can name a variant of a traffic
// policy: 1 to 32 bytes of [a-z0-9-] (it becomes part of Envoy cluster
// names and HeaderVariant's value).
func CheckVariantName(s string) error {
	if err := checkLowerDash(s, MaxVariantNameBytes); err != "" {
		return fmt.Errorf("%w: %s", ErrVariantName, err)
	}
	return nil
}

// checkLowerDash says what keeps s from being 1 to max bytes of
// [a-z0-9-], or "".
func checkLowerDash(s string, max int) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > max:
		return fmt.Sprintf("%d bytes, at most %d", len(s), max)
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Sprintf("byte %d is %q, want a-z, 0-9 or '-'", i, r)
		}
	}
	return ""
}
