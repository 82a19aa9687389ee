package telemetry

import "go.opentelemetry.io/otel/attribute"

// The span names and attribute keys every HelixFlow process uses, in one
// place so that helix-authz, the workers, the e2e tests and the docs agree.
// docs/tracing.md lists them for operators; change both together.

// helix-authz: the Check span is otelgrpc's server span
// (envoy.service.auth.v3.Authorization/Check); these attributes go on it.
const (
	// AttrDecision is the Check's answer: DecisionAllow or DecisionDeny.
	AttrDecision = attribute.Key("helix.decision")
	// AttrReason is the denial reason as docs/troubleshooting.md's
	// check-reasons table words it (and helix_authz_checks_total{reason}).
	AttrReason = attribute.Key("helix.reason")
	// AttrClient is the OAuth2 client (or API key's client) id asking.
	AttrClient = attribute.Key("helix.client")
	// AttrModel is the model the request names.
	AttrModel = attribute.Key("helix.model")
	// AttrPlan is the client's plan, whose limits apply.
	AttrPlan = attribute.Key("helix.plan")
)

// Values of AttrDecision.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// SpanRateLimit is the Check's child span for the rate-limit decision.
const SpanRateLimit = "ratelimit"

// Attributes of the SpanRateLimit span.
const (
	// AttrRateLimitKey is the counter of the window reported (its Redis key:
	// "<domain>:{<client>}:<len(model)>:<model>:<s|m>:<window start>").
	AttrRateLimitKey = attribute.Key("helix.ratelimit.key")
	// AttrRateLimitLimit is the requests allowed per window.
	AttrRateLimitLimit = attribute.Key("helix.ratelimit.limit")
	// AttrRateLimitRemaining is what is left in the window after this one.
	AttrRateLimitRemaining = attribute.Key("helix.ratelimit.remaining")
	// AttrRateLimitAllowed is false when the request was throttled.
	AttrRateLimitAllowed = attribute.Key("helix.ratelimit.allowed")
)

// Worker: children of the request's server span, made after the fact with
// explicit timestamps by the scheduler when that span is recording.
const (
	// SpanQueue runs from enqueue to the start of the request's batch.
	SpanQueue = "queue"
	// SpanBatch is the batch assembly; it carries AttrBatchSize.
	SpanBatch = "batch"
	// SpanExecute is the backend's run of the batch.
	SpanExecute = "execute"
	// SpanEncode is the encoding of the request's response.
	SpanEncode = "encode"
)

// AttrBatchSize is the number of requests in the batch (on SpanBatch).
const AttrBatchSize = attribute.Key("helix.batch_size")
