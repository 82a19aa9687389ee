package infer

import (
	"context"
	"time"
)

// MessageLimiter counts the messages of a long-lived stream (gRPC
// ModelStreamInfer, WebSocket inference) against the client's plan, on
// the same counters as the gateway's Check (helix-authz's limiter is the
// one source of truth; workers/limits asks it over gRPC). A nil
// MessageLimiter counts nothing (a worker not behind the gateway).
type MessageLimiter interface {
	// Spend takes n units (1 per inference message; 0 only re-checks that
	// the stream's credential and client are still good). An error means
	// no verdict could be had: the message is refused (503 / UNAVAILABLE),
	// never let through uncounted.
	Spend(ctx context.Context, s StreamCredential, n uint32) (Verdict, error)
}

// StreamCredential is who a stream belongs to, from the headers the
// gateway set when it opened (wire.HeaderClient, HeaderModel,
// HeaderCredential, HeaderExpires).
type StreamCredential struct {
	Client, Model, Credential string
	// Expires is when the credential expires (zero: never); the stream ends
	// then (WebSocket close 1008).
	Expires time.Time
}

// Verdict is a MessageLimiter's answer for one message.
type Verdict struct {
	// Allowed: the message may run. OverLimit: answer it 429 /
	// RESOURCE_EXHAUSTED and keep the stream. Revoked: end the stream.
	Allowed, OverLimit, Revoked bool
	// Limit, Remaining and Reset are the plan's tightest window, for the
	// answer's x-ratelimit-* values.
	Limit, Remaining uint32
	Reset            time.Time
	// Reason says why a message was refused (never a secret).
	Reason string
}
