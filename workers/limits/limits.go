// Package limits is the worker's client of helix-authz's
// helixflow.limits.v1.Limits service: it implements infer.MessageLimiter,
// so that every message of a long-lived stream (gRPC ModelStreamInfer,
// WebSocket inference) counts against the client's plan on the counters
// the gateway's Check spends.
package limits

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"

	"github.com/helixflow/helixflow/internal/wire"
	limitsv1 "github.com/helixflow/helixflow/proto/limits/v1"
	"github.com/helixflow/helixflow/workers/infer"
)

// DefaultTimeout bounds one Spend: a message waits at most this long for
// its verdict before it is refused (UNAVAILABLE / 503), so that a slow
// helix-authz cannot stall streams. It is the gateway's default Check
// timeout (authz.timeout), so a stream's message and a unary request are
// refused alike when helix-authz is slow: 200 ms refused messages under
// load that Check let through (make soak-ws on 2 busy cores).
const DefaultTimeout = time.Second

// Client implements infer.MessageLimiter over a connection to
// helix-authz's gRPC listener (mTLS, a worker identity).
type Client struct {
	c       limitsv1.LimitsClient
	timeout time.Duration
}

var _ infer.MessageLimiter = (*Client)(nil)

// New returns a Client on conn; timeout <= 0 means DefaultTimeout.
func New(conn grpc.ClientConnInterface, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{c: limitsv1.NewLimitsClient(conn), timeout: timeout}
}

// Spend implements infer.MessageLimiter.
func (c *Client) Spend(ctx context.Context, s infer.StreamCredential, n uint32) (infer.Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.c.Spend(ctx, &limitsv1.SpendRequest{ClientId: s.Client, Model: s.Model, Credential: s.Credential, Count: n})
	if err != nil {
		return infer.Verdict{}, fmt.Errorf("plan limit: %w", err)
	}
	v := infer.Verdict{Limit: resp.GetLimit(), Remaining: resp.GetRemaining(), Reason: resp.GetReason()}
	if ms := resp.GetResetUnixMs(); ms > 0 {
		v.Reset = time.UnixMilli(ms)
	}
	switch resp.GetVerdict() {
	case limitsv1.SpendResponse_ALLOWED:
		v.Allowed = true
	case limitsv1.SpendResponse_OVER_LIMIT:
		v.OverLimit = true
	case limitsv1.SpendResponse_REVOKED:
		v.Revoked = true
	default:
		return infer.Verdict{}, fmt.Errorf("plan limit: helix-authz answered verdict %v", resp.GetVerdict())
	}
	return v, nil
}

// ErrNoCredential: a stream with the gateway's client header but without
// its credential header (wire.HeaderCredential); it cannot be counted.
var ErrNoCredential = errors.New("the gateway set no " + wire.HeaderCredential)

// Credential reads a stream's credential from the headers the gateway set
// when it opened (get returns a header's only value, "" when absent or
// repeated). ok is false for a stream that did not come through the
// gateway (no wire.HeaderClient): it is not counted, as its usage is not.
// model is wire.HeaderModel ("" for a stream allowed every model: each
// message then names its own).
func Credential(get func(name string) string) (c infer.StreamCredential, ok bool, err error) {
	c.Client = get(wire.HeaderClient)
	if c.Client == "" {
		return c, false, nil
	}
	c.Model, c.Credential = get(wire.HeaderModel), get(wire.HeaderCredential)
	if c.Credential == "" {
		return c, true, ErrNoCredential
	}
	if e := get(wire.HeaderExpires); e != "" {
		sec, err := strconv.ParseInt(e, 10, 64)
		if err != nil || sec <= 0 {
			return c, true, fmt.Errorf("%s %q is not Unix seconds", wire.HeaderExpires, e)
		}
		c.Expires = time.Unix(sec, 0)
	}
	return c, true, nil
}
