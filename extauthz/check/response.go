package check

import (
	"encoding/json"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/helixflow/helixflow/internal/wire"
)

// outcome is the class of a denial.
type outcome uint8

const (
	outcomeUnauthenticated outcome = iota + 1 // 401 / UNAUTHENTICATED
	outcomeForbidden                          // 403 / PERMISSION_DENIED
	outcomeUnavailable                        // 503 / UNAVAILABLE
)

// denial says why a request is refused. reason is for metrics and logs;
// code and message are all a client ever sees, and are fixed strings.
type denial struct {
	outcome outcome
	reason  string
	code    string
	message string
}

func unauthenticated(reason string) denial {
	return denial{outcomeUnauthenticated, reason, "invalid_token", "invalid_token"}
}

func forbidden(reason, message string) denial {
	return denial{outcomeForbidden, reason, "access_denied", message}
}

func unavailable(reason string) denial {
	return denial{outcomeUnavailable, reason, "temporarily_unavailable", "temporarily_unavailable"}
}

var (
	denyNoCredential      = denial{outcomeUnauthenticated, "no_credential", "unauthorized", "credential required"}
	denyInsufficientScope = denial{outcomeForbidden, "insufficient_scope", "insufficient_scope", "insufficient_scope"}
	denyModelNotAllowed   = denial{outcomeForbidden, "model_not_allowed", "insufficient_scope", "insufficient_scope"}
)

// Metric results.
const (
	resultOK          = "ok"
	resultDenied      = "denied"
	resultUnavailable = "unavailable"
)

func (d denial) result() string {
	if d.outcome == outcomeUnavailable {
		return resultUnavailable
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
// upstream and for rate limits, minus its credential.
func okResponse(p *Principal, t target, h *reqHeaders, method string) *authv3.CheckResponse {
	headers := make([]*corev3.HeaderValueOption, 0, 3)
	remove := make([]string, 0, 4+len(h.helix))
	remove = append(remove, hdrAuthorization, hdrAPIKey)

	headers = append(headers, header(wire.HeaderClient, p.ClientID))
	meta := map[string]*structpb.Value{
		"client_id": structpb.NewStringValue(p.ClientID),
		"auth":      structpb.NewStringValue(method),
	}
	if p.Plan != "" {
		headers = append(headers, header(wire.HeaderPlan, p.Plan))
		meta["plan"] = structpb.NewStringValue(p.Plan)
	} else {
		remove = append(remove, wire.HeaderPlan)
	}
	if t.reach == reachModel {
		headers = append(headers, header(wire.HeaderModel, t.model))
		meta["model"] = structpb.NewStringValue(t.model)
		if t.version != "" {
			meta["model_version"] = structpb.NewStringValue(t.version)
		}
	} else {
		// No model known: a client-sent x-helix-model must not route.
		remove = append(remove, wire.HeaderModel)
	}
	for _, name := range h.helix {
		if name != wire.HeaderClient && name != wire.HeaderPlan && name != wire.HeaderModel && !contains(remove, name) {
			remove = append(remove, name)
		}
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         headers,
			HeadersToRemove: remove,
		}},
		DynamicMetadata: &structpb.Struct{Fields: meta},
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
