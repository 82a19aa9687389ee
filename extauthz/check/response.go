package check

import (
	"encoding/json"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/internal/wire"
)

// Rate-limit headers of every answer on a limited plan.
const (
	HeaderRateLimitLimit     = "x-ratelimit-limit"
	HeaderRateLimitRemaining = "x-ratelimit-remaining"
	HeaderRateLimitReset     = "x-ratelimit-reset"
)

// outcome is the class of a denial.
type outcome uint8

const (
	outcomeUnauthenticated    outcome = iota + 1 // 401 / UNAUTHENTICATED
	outcomeForbidden                             // 403 / PERMISSION_DENIED
	outcomeUnavailable                           // 503 / UNAVAILABLE
	outcomeRateLimited                           // 429 / RESOURCE_EXHAUSTED
	outcomeFailedPrecondition                    // 400 / FAILED_PRECONDITION
	outcomeInvalidArgument                       // 400 / INVALID_ARGUMENT
)

// denial says why a request is refused. reason is for metrics and logs;
// code and message are all a client ever sees, and are fixed strings.
type denial struct {
	outcome outcome
	reason  string
	code    string
	message string
	// limit is the plan's decision of an outcomeRateLimited denial.
	limit *ratelimit.Decision
}

func unauthenticated(reason string) denial {
	return denial{outcomeUnauthenticated, reason, "invalid_token", "invalid_token", nil}
}

func forbidden(reason, message string) denial {
	return denial{outcomeForbidden, reason, "access_denied", message, nil}
}

func unavailable(reason string) denial {
	return denial{outcomeUnavailable, reason, "temporarily_unavailable", "temporarily_unavailable", nil}
}

func rateLimited(d ratelimit.Decision) denial {
	return denial{outcomeRateLimited, "rate_limited", "rate_limited", "rate limit exceeded", &d}
}

var (
	denyNoCredential      = denial{outcomeUnauthenticated, "no_credential", "unauthorized", "credential required", nil}
	denyInsufficientScope = denial{outcomeForbidden, "insufficient_scope", "insufficient_scope", "insufficient_scope", nil}
	denyModelNotAllowed   = denial{outcomeForbidden, "model_not_allowed", "insufficient_scope", "insufficient_scope", nil}
	// denySharedMemory answers Triton's shared-memory calls: the region
	// is on the client's host, never the worker's. Its code is the
	// message, so that a REST client gets {"error": message}, the KServe
	// error shape tritonclient shows.
	denySharedMemory = denial{outcomeFailedPrecondition, "shared_memory", wire.SharedMemoryThroughGateway, wire.SharedMemoryThroughGateway, nil}
	// denyVariantScope: wire.HeaderVariantRequest from a credential
	// without wire.ScopeVariantOverride is refused rather than ignored, so
	// that a tester never believes they reached the variant they named.
	// (Literals, one line each: tests/docs reads them for
	// docs/troubleshooting.md; check_test.go ties them to wire's names.)
	denyVariantScope = denial{outcomeForbidden, "variant_override_scope", "insufficient_scope", "helix-variant needs the scope models:variant-override", nil}
	// denyBadVariant: a name wire.CheckVariantName refuses, or two names.
	denyBadVariant = denial{outcomeInvalidArgument, "bad_variant", "invalid_request", "helix-variant: not one variant name (1 to 32 of a-z, 0-9, -)", nil}
)

// Metric results.
const (
	resultOK          = "ok"
	resultDenied      = "denied"
	resultUnavailable = "unavailable"
	// resultRateLimited: over the plan's limit; the client was fine.
	resultRateLimited = "rate_limited"
)

func (d denial) result() string {
	switch d.outcome {
	case outcomeUnavailable:
		return resultUnavailable
	case outcomeRateLimited:
		return resultRateLimited
	}
	return resultDenied
}

// header builds a header that replaces any value the request had: Envoy
// appends when neither append nor append_action says otherwise.
func header(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// deniedResponse is the local reply Envoy sends instead of forwarding.
// gRPC callers get a gRPC status (Envoy turns the reply into a
// trailers-only response; grpc-status and grpc-message are set here too so
// the status does not depend on Envoy's mapping of HTTP codes).
func deniedResponse(d denial, grpcCaller bool) *authv3.CheckResponse {
	var (
		httpCode typev3.StatusCode
		grpcCode codes.Code
		headers  []*corev3.HeaderValueOption
	)
	switch d.outcome {
	case outcomeUnauthenticated:
		httpCode, grpcCode = typev3.StatusCode_Unauthorized, codes.Unauthenticated
		challenge := `Bearer error="invalid_token"`
		if d == denyNoCredential {
			// RFC 6750 3.1: no error code when no credential was sent.
			challenge = "Bearer"
		}
		headers = append(headers, header("www-authenticate", challenge))
	case outcomeForbidden:
		httpCode, grpcCode = typev3.StatusCode_Forbidden, codes.PermissionDenied
		if d.code == "insufficient_scope" {
			headers = append(headers, header("www-authenticate", `Bearer error="insufficient_scope"`))
		}
	case outcomeFailedPrecondition:
		httpCode, grpcCode = typev3.StatusCode_BadRequest, codes.FailedPrecondition
	case outcomeInvalidArgument:
		httpCode, grpcCode = typev3.StatusCode_BadRequest, codes.InvalidArgument
	case outcomeRateLimited:
		httpCode, grpcCode = typev3.StatusCode_TooManyRequests, codes.ResourceExhausted
		headers = append(headers, rateLimitHeaders(d.limit)...)
		headers = append(headers, header("retry-after", resetSeconds(d.limit.Reset)))
	default:
		httpCode, grpcCode = typev3.StatusCode_ServiceUnavailable, codes.Unavailable
		headers = append(headers, header("retry-after", "1"))
	}
	var body string
	if grpcCaller {
		headers = append(headers,
			header("content-type", "application/grpc"),
			header("grpc-status", strconv.Itoa(int(grpcCode))),
			header("grpc-message", d.message))
		body = d.message
	} else {
		headers = append(headers,
			header("content-type", "application/json"),
			header("cache-control", "no-store"))
		body = errorBody(d)
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode), Message: d.code},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: httpCode},
			Headers: headers,
			Body:    body,
		}},
	}
}

// errorBody is {"error": code[, "error_description": message]}.
func errorBody(d denial) string {
	v := struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{Error: d.code}
	if d.message != d.code {
		v.Description = d.message
	}
	b, err := json.Marshal(v)
	if err != nil {
		return `{"error":"access_denied"}`
	}
	return string(b)
}

// okResponse lets the request through with the caller's identity for the
// upstream and the access log, minus its credential, and the plan's state
// for the client. No dynamic metadata: nothing in Envoy reads it, and
// building and merging a Struct costs both sides on every request.
//
// A stream (ModelStreamInfer, a WebSocket) also gets its credential's id
// and expiry for the worker's per-message checks. Sec-WebSocket-Protocol
// never goes on as the client sent it, since it may hold a credential: on
// a WebSocket that offered wire.WSProtocol it becomes exactly that, else
// it is removed.
//
// Inference on one model gets what a traffic policy's routes read
// (docs/rollouts.md): wire.HeaderAssignment always (Envoy ignores it where
// no sticky policy exists) and wire.HeaderRequestedVersion when the
// request names a version. variant, the admitted wire.HeaderVariantRequest
// ("" when none), becomes wire.HeaderVariant on any request for one model.
func okResponse(p *Principal, t target, h *reqHeaders, limit *ratelimit.Decision, sc streamCredential, variant string) *authv3.CheckResponse {
	infer := t.action == actionInfer && t.reach == reachModel
	n := 1
	for _, set := range [...]bool{p.Plan != "", t.reach == reachModel, t.sequence != "", t.stream, t.stream,
		h.hasWSProtocol, infer, infer && t.version != "", variant != "" && t.reach == reachModel} {
		if set {
			n++
		}
	}
	headers := newHeaderList(n)
	remove := make([]string, 0, 4+len(h.helix))
	remove = append(remove, hdrAuthorization, hdrAPIKey)

	headers.set(wire.HeaderClient, p.ClientID)
	if p.Plan != "" {
		headers.set(wire.HeaderPlan, p.Plan)
	} else {
		remove = append(remove, wire.HeaderPlan)
	}
	if t.reach == reachModel {
		headers.set(wire.HeaderModel, t.model)
	} else {
		// No model known: a client-sent x-helix-model must not route.
		remove = append(remove, wire.HeaderModel)
	}
	if t.sequence != "" {
		// Envoy routes it to the model's consistent-hash clusters.
		headers.set(wire.HeaderSequence, t.sequence)
	}
	if infer {
		headers.set(wire.HeaderAssignment, wire.AssignmentHeaderValue(p.ClientID, t.model))
		if t.version != "" {
			headers.set(wire.HeaderRequestedVersion, t.version)
		}
	}
	if variant != "" && t.reach == reachModel {
		headers.set(wire.HeaderVariant, variant)
	}
	if h.hasVariant {
		// Admitted as wire.HeaderVariant (or of no use): the client's
		// header goes no further.
		remove = append(remove, wire.HeaderVariantRequest)
	}
	if t.stream {
		headers.set(wire.HeaderCredential, sc.id)
		if sc.expires != "" {
			headers.set(wire.HeaderExpires, sc.expires)
		} else {
			remove = append(remove, wire.HeaderExpires)
		}
	}
	if h.hasWSProtocol {
		if t.ws && parseWSProtocols(h.wsProtocol).helix {
			headers.set(wire.HeaderWSProtocol, wire.WSProtocol)
		} else {
			remove = append(remove, wire.HeaderWSProtocol)
		}
	}
	for _, name := range h.helix {
		if !setsHeader(headers.list, name) && !contains(remove, name) {
			remove = append(remove, name)
		}
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              headers.list,
			HeadersToRemove:      remove,
			ResponseHeadersToAdd: rateLimitHeaders(limit),
		}},
	}
}

// headerSlot is one header of an OK answer and its value.
type headerSlot struct {
	opt corev3.HeaderValueOption
	val corev3.HeaderValue
}

// headerList builds an OK answer's headers in one allocation rather than
// two a header: Check sets up to ten on every request.
type headerList struct {
	slots []headerSlot
	list  []*corev3.HeaderValueOption
}

// newHeaderList makes room for n headers.
func newHeaderList(n int) headerList {
	return headerList{slots: make([]headerSlot, n), list: make([]*corev3.HeaderValueOption, 0, n)}
}

// set adds a header that replaces any value the request had, as header
// does.
func (l *headerList) set(key, value string) {
	if len(l.list) == len(l.slots) {
		l.list = append(l.list, header(key, value)) // more than counted: still right
		return
	}
	s := &l.slots[len(l.list)]
	s.val.Key, s.val.Value = key, value
	s.opt.Header, s.opt.AppendAction = &s.val, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	l.list = append(l.list, &s.opt)
}

// setsHeader reports whether headers set name.
func setsHeader(headers []*corev3.HeaderValueOption, name string) bool {
	for _, hv := range headers {
		if hv.GetHeader().GetKey() == name {
			return true
		}
	}
	return false
}

// rateLimitHeaders tell the client its plan's state as Envoy's ratelimit
// filter did (draft-polli-ratelimit-headers-03): the limit of the window
// closest to its limit with every window's quota policy, what is left in
// it, and the seconds until it resets. None when there is no limit.
func rateLimitHeaders(d *ratelimit.Decision) []*corev3.HeaderValueOption {
	if d == nil || len(d.Windows) == 0 {
		return nil
	}
	limit := strconv.FormatUint(uint64(d.Limit), 10)
	for _, w := range d.Windows {
		limit += ", " + strconv.FormatUint(uint64(w.Limit), 10) + ";w=" + strconv.FormatInt(int64(w.Length/time.Second), 10)
	}
	return []*corev3.HeaderValueOption{
		header(HeaderRateLimitLimit, limit),
		header(HeaderRateLimitRemaining, strconv.FormatUint(uint64(d.Remaining), 10)),
		header(HeaderRateLimitReset, resetSeconds(d.Reset)),
	}
}

// resetSeconds is a reset delay in whole seconds, rounded up (a client
// that waits that long finds the window reset).
func resetSeconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
