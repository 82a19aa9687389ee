// Package check is helix-authz's Envoy Authorization service
// (envoy.service.auth.v3.Authorization/Check): it authenticates a request
// by access token or API key, finds the model it is for, checks scope and
// the client's model list, and answers Envoy with the identity headers for
// the upstream or with a denial. It never fails open: any error that keeps
// it from deciding denies the request.
//
// Credentials (exactly one per request):
//   - "authorization: Bearer <jwt>": an RFC 9068 access token, verified by
//     Config.Verifier, then its jti checked against Config.Revocations, and
//     for a person's token (claim sid) also "sid:"+sid, which ending the
//     token's session revokes. The rate-limit principal stays the client
//     (the app), as for any token;
//   - "authorization: Bearer hx_..." or "x-api-key: hx_...": an API key
//     (APIKeyPrefix), checked by Config.APIKeys.
//
// The model comes from the REST path (/v2/models/{m}[/versions/{v}]/...,
// each segment percent-decoded as the worker decodes it) or, for gRPC
// GRPCInferenceService methods, from field 1 of the request message in the
// first body bytes Envoy sends with the check (ext_authz with_request_body
// with allow_partial_message and pack_as_bytes; the body string form only
// carries valid UTF-8). Every field visible in those bytes is parsed and a
// repeated field 1 is refused; a repeat beyond the bytes Envoy sent cannot
// be seen, so workers should refuse a request whose model differs from
// x-helix-model. ModelStreamInfer has no body at check time: it needs
// "models:infer" and a model list of "*", and gets no x-helix-model.
//
// Sequences: a ModelInfer's parameters (field 4, also in those first
// bytes) and a REST inference's JSON "parameters" (the route sends the
// first bytes of its body) give Triton's sequence_id, set as
// x-helix-sequence (wire.HeaderSequence) for Envoy to hash on, so that
// every step of a sequence reaches one worker. It is never a reason to
// deny. Triton's shared-memory calls (gRPC SystemSharedMemory* and
// CudaSharedMemory*, REST /v2/systemsharedmemory and /v2/cudasharedmemory)
// cannot work through the gateway and are answered FAILED_PRECONDITION /
// 400 with wire.SharedMemoryThroughGateway. Triton's generate and
// generate_stream are inference on their model.
//
// Scopes: "models:infer" (inference on every model), "models:<m>:infer"
// (on model m), "models:read" (health, server and model metadata, ready,
// config, statistics), "models:variant-override" (wire.ScopeVariantOverride:
// may send helix-variant, below). Inference scopes do not imply models:read. Besides
// scope, the client's model list (token claim helix_models, or the API
// key's client) must hold the model or "*"; an empty list allows no model.
//
// WebSocket upgrades (/v2/models/{m}[/versions/{v}]/infer/ws) are
// inference on m. Their credential may also come, when neither header is
// sent, as the subprotocol "helix.bearer.<token or key>" in
// Sec-WebSocket-Protocol (wire.WSTokenProtocolPrefix): browsers cannot set
// headers on a WebSocket, and a URL would put the token in logs.
//
// The OK answer sets x-helix-client, x-helix-plan and x-helix-model
// (overwriting) and removes authorization, x-api-key and every other
// x-helix-* header the client sent. A stream (ModelStreamInfer, a
// WebSocket) also gets x-helix-credential ("jti:<jti>" or "key:<prefix>")
// and x-helix-expires (Unix seconds; absent: never), for the worker's
// per-message checks. Sec-WebSocket-Protocol becomes exactly
// wire.WSProtocol on an upgrade that offered it and is removed otherwise,
// so a credential in it never reaches the worker. Envoy's
// ext_authz filter should clear the route cache so that gRPC requests
// route by x-helix-model.
//
// Traffic policies (docs/rollouts.md): inference on one model also gets
// x-helix-assignment (wire.AssignmentHeaderValue of client and model: a
// sticky policy's weighted clusters hash on it) and, when the request
// names a version (gRPC field 2 in those first bytes, REST
// /versions/{v}), x-helix-requested-version. A client's "helix-variant:
// <name>" (wire.HeaderVariantRequest) needs the scope
// models:variant-override (403 / PERMISSION_DENIED without it, rather
// than ignored) and a variant name (wire.CheckVariantName, else 400 /
// INVALID_ARGUMENT); a request for one model then gets x-helix-variant.
//
// Rate limits: an authorized request is then counted against its client's
// plan (Config.RateLimits, per client and model); the answer carries
// x-ratelimit-limit, -remaining and -reset for the client. Opening a stream
// costs nothing: the worker counts each of its messages on the same
// counters (helix-authz's Limits.Spend).
//
// Denials: 401 with WWW-Authenticate (no or bad credential, revoked
// token), 403 with a short JSON error (route, model, scope), 429 with
// retry-after over the plan's limit, 503 when a backend needed for the
// decision is unreachable, 400 for a bad helix-variant; gRPC callers get
// UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAVAILABLE or
// INVALID_ARGUMENT as grpc-status.
package check

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/extauthz/token"
	"github.com/helixflow/helixflow/internal/wire"
)

// Scopes.
const (
	// ScopeInfer allows inference on every model.
	ScopeInfer = "models:infer"
	// ScopeRead allows health, metadata, ready, config and statistics.
	ScopeRead = "models:read"
	// ScopeVariantOverride lets a credential pick a traffic policy's
	// variant with helix-variant (wire.ScopeVariantOverride).
	ScopeVariantOverride = wire.ScopeVariantOverride
	// AllModels in a model list allows every model.
	AllModels = "*"
)

// ModelInferScope is the scope that allows inference on model only.
func ModelInferScope(model string) string {
	return "models:" + model + ":infer"
}

// ScopeGranted reports whether holding scopes grants scope: it is among
// them, or it is a per-model inference scope and they hold ScopeInfer.
func ScopeGranted(scope string, scopes []string) bool {
	if slices.Contains(scopes, scope) {
		return true
	}
	return strings.HasPrefix(scope, "models:") && strings.HasSuffix(scope, ":infer") && slices.Contains(scopes, ScopeInfer)
}

// ErrInvalidKey is what APIKeyChecker returns for a key that is unknown,
// wrong, expired or revoked. Any other error means the check could not be
// made (answered 503).
var ErrInvalidKey = errors.New("invalid api key")

// Principal is an authenticated client.
type Principal struct {
	ClientID string
	Plan     string
	Scopes   []string
	// Models the client may reach ("*" for all).
	Models []string
	// Expires is when the credential expires (zero: never): Check sets a
	// token's exp, an APIKeyChecker the key's expiry. A stream's worker
	// closes it then (wire.HeaderExpires).
	Expires time.Time
}

// APIKeyChecker checks a presented API key.
type APIKeyChecker interface {
	CheckAPIKey(ctx context.Context, presented string) (*Principal, error)
}

// TokenVerifier verifies access tokens (token.Verifier). Errors wrapping
// token.ErrInvalidToken are answered 401, any other error 503.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*token.Claims, error)
}

// RevocationChecker tells whether a token id was revoked.
type RevocationChecker interface {
	IsRevoked(ctx context.Context, jti string) (bool, error)
}

// ClientChecker tells whether a token's client may still use it: the client
// exists and is enabled (disabling one ends its tokens at once), and the
// token was issued after the client's cutoff (a secret rotation or a
// change of enabled ends the tokens issued before).
type ClientChecker interface {
	ClientTokens(ctx context.Context, clientID string) (ClientTokens, error)
}

// ClientTokens is what a client's state says about its tokens.
type ClientTokens struct {
	// Enabled is false for a disabled or unknown client.
	Enabled bool
	// ValidAfter is the cutoff: tokens issued before it are refused (see
	// token.IssuedAfter). Zero: none.
	ValidAfter time.Time
}

// RateLimiter takes the plan's rate-limit decision for an authorized
// request (ratelimit.Limiter). When the counters are unavailable it
// returns an error wrapping ratelimit.ErrUnavailable with the failure
// mode's decision.
type RateLimiter interface {
	Take(ctx context.Context, plan, client, model string) (ratelimit.Decision, error)
}

// UsageCounter counts, for the usage ledger, a request refused over its
// client's plan limit. It is called on Check's path: it must not block.
type UsageCounter interface {
	Throttled(client, model string)
}

// Config configures a Service. A nil Verifier or APIKeys refuses that kind
// of credential (401); a nil Revocations or Clients answers every token
// 503, since revocation or the client's state cannot be checked.
type Config struct {
	Verifier    TokenVerifier
	APIKeys     APIKeyChecker
	Revocations RevocationChecker
	Clients     ClientChecker
	// RateLimits counts every authorized request against its client's
	// plan; nil: no plan limits.
	RateLimits RateLimiter
	// Usage counts the requests refused over the plan's limit for the
	// usage ledger (extauthz/usage.Throttles); nil: not counted.
	Usage UsageCounter
	// Logger (slog.Default when nil). Denials are logged at debug level,
	// backend failures at warn; never a credential.
	Logger *slog.Logger
	// Metrics registers helix_authz_checks_total,
	// helix_authz_check_duration_seconds and
	// helix_authz_client_requests_total when set.
	Metrics prometheus.Registerer
	// MaxClientLabels and MaxModelLabels bound the distinct client and
	// model values of helix_authz_client_requests_total (0: 1000 and 200);
	// later values are counted as "_other".
	MaxClientLabels, MaxModelLabels int
}

// Service implements envoy.service.auth.v3.Authorization.
type Service struct {
	authv3.UnimplementedAuthorizationServer

	verifier    TokenVerifier
	apiKeys     APIKeyChecker
	revocations RevocationChecker
	clients     ClientChecker
	rateLimits  RateLimiter
	usage       UsageCounter
	log         *slog.Logger
	metrics     *metrics
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{
		verifier:    cfg.Verifier,
		apiKeys:     cfg.APIKeys,
		revocations: cfg.Revocations,
		clients:     cfg.Clients,
		rateLimits:  cfg.RateLimits,
		usage:       cfg.Usage,
		log:         cfg.Logger,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.metrics = newMetrics(cfg.Metrics, s.log, cfg.MaxClientLabels, cfg.MaxModelLabels)
	return s
}

// Register registers the service on a gRPC server.
func (s *Service) Register(gs grpc.ServiceRegistrar) {
	authv3.RegisterAuthorizationServer(gs, s)
}

// Check implements Authorization. It always answers with a CheckResponse
// (an RPC error would leave the decision to Envoy's failure mode).
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	resp, dec := s.check(ctx, req)
	s.metrics.observe(ctx, dec, time.Since(start))
	annotate(ctx, dec)
	return resp, nil
}

func (s *Service) check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, decision) {
	r := req.GetAttributes().GetRequest().GetHttp()
	if r == nil {
		d := forbidden("no_http_attributes", "route not allowed")
		return deniedResponse(d, false), decision{result: d.result(), reason: d.reason}
	}
	h := readHeaders(r)
	h.wsPath = isWSPath(r.GetPath())
	grpcCaller := isGRPC(h.contentType)
	deny := func(d denial, p *Principal, t target, routed bool) (*authv3.CheckResponse, decision) {
		s.logDenial(ctx, d, p, t)
		return deniedResponse(d, grpcCaller), decision{result: d.result(), reason: d.reason, principal: p, target: t, routed: routed}
	}

	p, d := s.authenticate(ctx, &h)
	if d != nil {
		return deny(*d, nil, target{}, false)
	}
	body := r.GetRawBody()
	if len(body) == 0 && r.GetBody() != "" {
		body = []byte(r.GetBody())
	}
	t, err := parseTarget(r.GetMethod(), r.GetPath(), body, grpcCaller, h.streamModel)
	if err != nil {
		return deny(targetDenial(err), p, t, false)
	}
	if h.fromWSProtocol() && !t.ws {
		// isWSPath let the subprotocols carry it, but this is no upgrade.
		return deny(forbidden("unknown_route", "route not allowed"), p, t, false)
	}
	if d := authorize(p, t); d != nil {
		return deny(*d, p, t, true)
	}
	if h.hasVariant {
		if d := checkVariant(p, h.variant); d != nil {
			return deny(*d, p, t, true)
		}
	}
	var stream streamCredential
	if t.stream {
		var d *denial
		if stream, d = streamCredentialOf(p, &h); d != nil {
			return deny(*d, p, t, true)
		}
	}
	var limit *ratelimit.Decision
	// A stream's open spends nothing: the worker counts each of its
	// messages on the same counters (helix-authz's Limits.Spend).
	if s.rateLimits != nil && !t.stream {
		rl, err := s.takeRateLimit(ctx, p.Plan, p.ClientID, t.model)
		switch {
		case err != nil && !rl.Allowed:
			return deny(unavailable("ratelimit_unavailable"), p, t, true)
		case !rl.Allowed:
			if s.usage != nil {
				s.usage.Throttled(p.ClientID, t.model)
			}
			return deny(rateLimited(rl), p, t, true)
		case err == nil && len(rl.Windows) > 0:
			limit = &rl
		}
	}
	return okResponse(p, t, &h, limit, stream, h.variant), decision{result: resultOK, reason: "ok", principal: p, target: t, routed: true}
}

// authenticate finds and checks the request's credential. It returns the
// principal or a denial.
func (s *Service) authenticate(ctx context.Context, h *reqHeaders) (*Principal, *denial) {
	kind, cred := credential(h)
	h.credKind, h.cred = kind, cred
	var (
		p *Principal
		d *denial
	)
	switch kind {
	case credNone:
		return nil, &denyNoCredential
	case credBad:
		d := unauthenticated("malformed_credential")
		return nil, &d
	case credAPIKey:
		p, d = s.checkAPIKey(ctx, cred)
	default:
		p, d = s.checkJWT(ctx, cred, h)
	}
	if d != nil {
		return nil, d
	}
	if !validHeaderValue(p.ClientID) || (p.Plan != "" && !validHeaderValue(p.Plan)) {
		d := forbidden("bad_principal", "client not allowed")
		return nil, &d
	}
	return p, nil
}

// checkJWT verifies a token; h gets its id for a stream's credential.
func (s *Service) checkJWT(ctx context.Context, raw string, h *reqHeaders) (*Principal, *denial) {
	if s.verifier == nil {
		d := unauthenticated("jwt_not_accepted")
		return nil, &d
	}
	c, err := s.verifier.Verify(ctx, raw)
	switch {
	case errors.Is(err, token.ErrInvalidToken):
		s.log.DebugContext(ctx, "authz: token refused", "err", err)
		d := unauthenticated("invalid_token")
		return nil, &d
	case err != nil || c == nil:
		s.log.WarnContext(ctx, "authz: token verification unavailable", "err", err)
		d := unavailable("token_backend_unavailable")
		return nil, &d
	}
	if s.revocations == nil {
		s.log.ErrorContext(ctx, "authz: no revocation checker configured; denying tokens")
		d := unavailable("revocation_unavailable")
		return nil, &d
	}
	// A person's token also dies with its session: ending one revokes
	// "sid:"+id, which reaches every replica by notification.
	revoked, err := s.revocations.IsRevoked(ctx, c.JTI)
	if sid := c.SessionRevocationID(); err == nil && !revoked && sid != "" {
		revoked, err = s.revocations.IsRevoked(ctx, sid)
	}
	if err != nil {
		s.log.WarnContext(ctx, "authz: revocation check unavailable", "err", err)
		d := unavailable("revocation_unavailable")
		return nil, &d
	}
	if revoked {
		d := unauthenticated("revoked")
		return nil, &d
	}
	if s.clients == nil {
		s.log.ErrorContext(ctx, "authz: no client checker configured; denying tokens")
		d := unavailable("client_unavailable")
		return nil, &d
	}
	ct, err := s.clients.ClientTokens(ctx, c.ClientID)
	if err != nil {
		s.log.WarnContext(ctx, "authz: client check unavailable", "err", err)
		d := unavailable("client_unavailable")
		return nil, &d
	}
	if !ct.Enabled {
		d := unauthenticated("client_disabled")
		return nil, &d
	}
	if !token.IssuedAfter(c.IssuedAt, ct.ValidAfter) {
		d := unauthenticated("issued_before_client_change")
		return nil, &d
	}
	h.jti, h.sid = c.JTI, c.SessionID
	return &Principal{ClientID: c.ClientID, Plan: c.Plan, Scopes: c.Scopes, Models: c.Models, Expires: c.ExpiresAt}, nil
}

func (s *Service) checkAPIKey(ctx context.Context, key string) (*Principal, *denial) {
	if s.apiKeys == nil {
		d := unauthenticated("api_key_not_accepted")
		return nil, &d
	}
	p, err := s.apiKeys.CheckAPIKey(ctx, key)
	switch {
	case errors.Is(err, ErrInvalidKey):
		d := unauthenticated("invalid_api_key")
		return nil, &d
	case err != nil || p == nil:
		s.log.WarnContext(ctx, "authz: api key check unavailable", "err", err)
		d := unavailable("apikey_backend_unavailable")
		return nil, &d
	}
	return p, nil
}

// targetDenial maps a parseTarget error to a denial.
func targetDenial(err error) denial {
	switch {
	case errors.Is(err, errNoModel):
		return forbidden("no_model", "model name not found in request")
	case errors.Is(err, errBadModel):
		return forbidden("bad_model", "invalid model name")
	case errors.Is(err, errCompressed):
		return forbidden("compressed_body", "compressed gRPC messages cannot be checked")
	case errors.Is(err, errMalformedBody), errors.Is(err, errDuplicateModel):
		return forbidden("bad_body", "malformed request message")
	case errors.Is(err, errNotGRPC):
		return forbidden("not_grpc", "route not allowed")
	case errors.Is(err, errSharedMemory):
		return denySharedMemory
	default:
		return forbidden("unknown_route", "route not allowed")
	}
}

// authorize checks scope and the model list for t.
func authorize(p *Principal, t target) *denial {
	switch t.action {
	case actionRead:
		if !contains(p.Scopes, ScopeRead) {
			return &denyInsufficientScope
		}
	case actionInfer:
		if !hasInferScope(p.Scopes, t) {
			return &denyInsufficientScope
		}
	default:
		return &denyInsufficientScope
	}
	switch t.reach {
	case reachServer:
		return nil
	case reachModel:
		if contains(p.Models, AllModels) || contains(p.Models, t.model) {
			return nil
		}
	case reachAllModels:
		if contains(p.Models, AllModels) {
			return nil
		}
	}
	return &denyModelNotAllowed
}

// checkVariant admits a client's wire.HeaderVariantRequest: the
// credential must hold wire.ScopeVariantOverride (else 403, checked first
// so that a client without it learns nothing of names), and the name must
// be one variant name (else 400).
func checkVariant(p *Principal, name string) *denial {
	if !contains(p.Scopes, wire.ScopeVariantOverride) {
		return &denyVariantScope
	}
	if wire.CheckVariantName(name) != nil {
		return &denyBadVariant
	}
	return nil
}

// hasInferScope: models:infer, or models:<m>:infer for a request on m.
func hasInferScope(scopes []string, t target) bool {
	const prefix, suffix = "models:", ":infer"
	for _, sc := range scopes {
		if sc == ScopeInfer {
			return true
		}
		if t.reach == reachModel && len(sc) == len(prefix)+len(t.model)+len(suffix) &&
			strings.HasPrefix(sc, prefix) && strings.HasSuffix(sc, suffix) &&
			sc[len(prefix):len(sc)-len(suffix)] == t.model {
			return true
		}
	}
	return false
}

// validHeaderValue: non-empty visible ASCII, so Envoy takes it unchanged.
func validHeaderValue(v string) bool {
	if v == "" || len(v) > 1024 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

func (s *Service) logDenial(ctx context.Context, d denial, p *Principal, t target) {
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []any{"reason", d.reason, "status", d.code}
	if p != nil {
		attrs = append(attrs, "client_id", p.ClientID)
	}
	if t.rpc != "" {
		attrs = append(attrs, "rpc", t.rpc)
	}
	if t.model != "" {
		attrs = append(attrs, "model", t.model)
	}
	s.log.DebugContext(ctx, "authz: denied", attrs...)
}

// Errors of Authenticate.
var (
	// ErrUnauthenticated: no credential, a malformed one, or one that is
	// invalid, expired or revoked (answer 401). The error names the reason.
	ErrUnauthenticated = errors.New("check: not authenticated")
	// ErrUnavailable: a backend needed to judge the credential could not
	// answer (answer 503, never 401: the credential may be good).
	ErrUnavailable = errors.New("check: credentials cannot be checked now")
)

// Authenticate checks a machine caller's credential outside Envoy, for
// helix-authz's own APIs (the model catalogue, usage): authorization is the
// Authorization header's value ("Bearer <client JWT>" or "Bearer hx_...")
// and apiKey the x-api-key header's, "" when absent; exactly one may be
// set. It applies Check's rules (revocation, the client's state, key
// validity) but takes no route, scope or model decision and spends no
// rate-limit quota. Errors wrap ErrUnauthenticated or ErrUnavailable.
func (s *Service) Authenticate(ctx context.Context, authorization, apiKey string) (*Principal, error) {
	h := reqHeaders{
		authorization: authorization, hasAuthorization: authorization != "",
		apiKey: apiKey, hasAPIKey: apiKey != "",
	}
	p, d := s.authenticate(ctx, &h)
	if d == nil {
		return p, nil
	}
	if d.outcome == outcomeUnavailable {
		return nil, fmt.Errorf("%w (%s)", ErrUnavailable, d.reason)
	}
	return nil, fmt.Errorf("%w (%s)", ErrUnauthenticated, d.reason)
}
