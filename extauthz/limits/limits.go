// Package limits is helix-authz's helixflow.limits.v1.Limits service: the
// per-message plan limit of long-lived streams (gRPC ModelStreamInfer,
// WebSocket inference). A worker asks it once per message, on the same
// counters Check spends (one ratelimit.Limiter, one source of truth), so a
// stream's messages count exactly as unary requests do. It never trusts the
// worker for the client's plan: it reads the client from helix-authz's
// in-memory copy, and re-checks the stream's credential (a revoked token or
// key, a disabled or deleted client end the stream).
package limits

import (
	"context"
	"errors"
	"log/slog"
	"slices"

	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/token"
	"github.com/helixflow/helixflow/internal/wire"
	limitsv1 "github.com/helixflow/helixflow/proto/limits/v1"
)

// maxIDLen bounds the ids a request may name (client, credential): longer
// ones are refused before any lookup.
const maxIDLen = 256

// maxCount bounds the units one Spend takes (a message is 1).
const maxCount = 64

// Clients reads a client, enabled or not (credentials.Clients): an unknown
// one is an error wrapping store.ErrNotFound.
type Clients interface {
	GetClient(ctx context.Context, id string) (*store.Client, error)
}

// APIKeys reads a key by its prefix (credentials.APIKeys.Key): a revoked or
// unknown one is an error wrapping store.ErrNotFound.
type APIKeys interface {
	Key(ctx context.Context, prefix string) (*store.APIKey, error)
}

// Config configures a Service. Clients, Revocations and APIKeys are
// required; a nil RateLimits counts nothing (no plan limits), as in Check.
type Config struct {
	Clients     Clients
	Revocations check.RevocationChecker
	APIKeys     APIKeys
	RateLimits  check.RateLimiter
	// Usage counts the messages refused over the plan's limit in the
	// usage ledger, as Check counts refused requests (nil: not counted).
	Usage  check.UsageCounter
	Logger *slog.Logger
	// Now is the clock (time.Now when nil), for API keys' expiry and the
	// reset time.
	Now func() time.Time
}

// Service implements limitsv1.LimitsServer.
type Service struct {
	limitsv1.UnimplementedLimitsServer
	cfg Config
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}
}

// Register registers the service on a gRPC server.
func (s *Service) Register(gs grpc.ServiceRegistrar) {
	limitsv1.RegisterLimitsServer(gs, s)
}

// Spend implements limitsv1.LimitsServer. Bad requests are
// INVALID_ARGUMENT; a lookup that could not be made, or counters that are
// unavailable under a closed failure mode, UNAVAILABLE (the worker refuses
// that message: nothing passes uncounted).
func (s *Service) Spend(ctx context.Context, req *limitsv1.SpendRequest) (*limitsv1.SpendResponse, error) {
	client, model, cred := req.GetClientId(), req.GetModel(), req.GetCredential()
	switch {
	case client == "" || len(client) > maxIDLen:
		return nil, status.Error(codes.InvalidArgument, "client_id is required (at most 256 bytes)")
	case req.GetCount() > 0 && wire.CheckModelName(model) != nil:
		return nil, status.Errorf(codes.InvalidArgument, "model %q is not a valid model name", model)
	case len(cred) > maxIDLen:
		return nil, status.Error(codes.InvalidArgument, "credential is longer than 256 bytes")
	case req.GetCount() > maxCount:
		return nil, status.Errorf(codes.InvalidArgument, "count %d is over %d", req.GetCount(), maxCount)
	}
	id, ok := wire.ParseCredentialID(cred)
	if !ok {
		return nil, status.Error(codes.InvalidArgument, `credential must be "jti:<token id>[;sid:<session id>]" or "key:<API key prefix>"`)
	}

	c, err := s.cfg.Clients.GetClient(ctx, client)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return revoked("client unknown or deleted"), nil
	case err != nil:
		return nil, s.unavailable(ctx, "client", err)
	case !c.Enabled:
		return revoked("client disabled"), nil
	case model != "" && !slices.Contains(c.Models, check.AllModels) && !slices.Contains(c.Models, model):
		// Narrowing a client's models reaches its open streams too.
		return revoked("model no longer allowed for this client"), nil
	}

	switch {
	case id.Token != "":
		gone, err := s.cfg.Revocations.IsRevoked(ctx, id.Token)
		if err == nil && !gone && id.Session != "" {
			// A person's token dies with its session, as in Check.
			gone, err = s.cfg.Revocations.IsRevoked(ctx, token.RevokedSessionPrefix+id.Session)
		}
		if err != nil {
			return nil, s.unavailable(ctx, "revocation", err)
		}
		if gone {
			return revoked("token revoked"), nil
		}
	case id.APIKey != "":
		k, err := s.cfg.APIKeys.Key(ctx, id.APIKey)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return revoked("API key revoked or deleted"), nil
		case err != nil:
			return nil, s.unavailable(ctx, "API key", err)
		case k.RevokedAt != nil:
			return revoked("API key revoked"), nil
		case k.ClientID != client:
			return revoked("API key is not this client's"), nil
		case k.ExpiresAt != nil && !k.ExpiresAt.After(s.cfg.Now()):
			return revoked("API key expired"), nil
		}
	}

	if req.GetCount() == 0 || s.cfg.RateLimits == nil {
		return &limitsv1.SpendResponse{Verdict: limitsv1.SpendResponse_ALLOWED}, nil
	}
	return s.take(ctx, c.Plan, client, model, req.GetCount())
}

// take takes count units for one message from the same counters as Check.
func (s *Service) take(ctx context.Context, plan, client, model string, count uint32) (*limitsv1.SpendResponse, error) {
	var d rlDecision
	for range count {
		rl, err := ratelimit.TakeTraced(ctx, s.cfg.RateLimits, plan, client, model)
		switch {
		case err != nil && !rl.Allowed:
			// The failure mode is closed: the message is refused.
			return nil, s.unavailable(ctx, "rate limit", err)
		case !rl.Allowed:
			if s.cfg.Usage != nil {
				s.cfg.Usage.Throttled(client, model)
			}
			return &limitsv1.SpendResponse{
				Verdict: limitsv1.SpendResponse_OVER_LIMIT, Limit: rl.Limit, Remaining: 0,
				ResetUnixMs: s.cfg.Now().Add(rl.Reset).UnixMilli(), Reason: "over the plan's rate limit",
			}, nil
		case err == nil && len(rl.Windows) > 0:
			d = rlDecision{set: true, limit: rl.Limit, remaining: rl.Remaining, reset: rl.Reset}
		}
	}
	resp := &limitsv1.SpendResponse{Verdict: limitsv1.SpendResponse_ALLOWED}
	if d.set {
		resp.Limit, resp.Remaining, resp.ResetUnixMs = d.limit, d.remaining, s.cfg.Now().Add(d.reset).UnixMilli()
	}
	return resp, nil
}

type rlDecision struct {
	set              bool
	limit, remaining uint32
	reset            time.Duration
}

func (s *Service) unavailable(ctx context.Context, what string, err error) error {
	s.cfg.Logger.WarnContext(ctx, "limits: spend unavailable", "backend", what, "err", err)
	return status.Errorf(codes.Unavailable, "%s check unavailable", what)
}

func revoked(reason string) *limitsv1.SpendResponse {
	return &limitsv1.SpendResponse{Verdict: limitsv1.SpendResponse_REVOKED, Reason: reason}
}
