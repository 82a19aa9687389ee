package check

import (
	"errors"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// action is what a request does to a model.
type action uint8

const (
	actionRead action = iota
	actionInfer
)

// reach is how many models a request touches.
type reach uint8

const (
	// reachServer: no model (server health and metadata).
	reachServer reach = iota
	// reachModel: the one model in target.model.
	reachModel
	// reachAllModels: any model (statistics of all models, streams whose
	// model is unknown at check time).
	reachAllModels
)

// target is what a request asks for.
type target struct {
	action  action
	reach   reach
	model   string
	version string
	// rpc names the gRPC method, empty for REST (logs only).
	rpc string
}

// maxModelNameBytes bounds a model name.
const maxModelNameBytes = 255

// grpcServicePrefix is the path prefix of the KServe v2 gRPC service.
const grpcServicePrefix = "/inference.GRPCInferenceService/"

// Denials of parseTarget.
var (
	errUnknownRoute = errors.New("route not allowed")
	errBadModel     = errors.New("invalid model name")
	errNoModel      = errors.New("model name not found in request")
	errNotGRPC      = errors.New("gRPC method without gRPC content type")
)

// parseTarget finds what the request asks for from the method, the request
// target as Envoy saw it (path and query, not decoded), for gRPC the first
// bytes of the body, and for a stream the model the client named in
// HeaderStreamModel ("" if none).
func parseTarget(method, rawPath string, body []byte, grpcCaller bool, streamModel string) (target, error) {
	if strings.HasPrefix(rawPath, grpcServicePrefix) {
		if !grpcCaller || method != "POST" {
			return target{}, errNotGRPC
		}
		return grpcTarget(rawPath[len(grpcServicePrefix):], body, streamModel)
	}
	return restTarget(rawPath)
}

// grpcTarget maps a GRPCInferenceService method to a target. Every model
// request message has the model name in field 1 and the version in
// field 2.
func grpcTarget(rpc string, body []byte, streamModel string) (target, error) {
	t := target{rpc: rpc}
	switch rpc {
	case "ServerLive", "ServerReady", "ServerMetadata":
		t.action, t.reach = actionRead, reachServer
		return t, nil
	case "ModelStreamInfer":
		// A stream's messages are not buffered for the check. A stream
		// whose client named its model is for that model (the worker
		// refuses messages for any other); one that did not may touch any,
		// so only a client allowed every model may open it.
		t.action, t.reach = actionInfer, reachAllModels
		if streamModel != "" {
			if !validModelName(streamModel) {
				return target{}, errBadModel
			}
			t.reach, t.model = reachModel, streamModel
		}
		return t, nil
	case "ModelReady", "ModelMetadata", "ModelConfig", "ModelStatistics":
		t.action = actionRead
	case "ModelInfer":
		t.action = actionInfer
	default:
		return target{}, errUnknownRoute
	}
	if len(body) == 0 {
		// Envoy sent no body: with_request_body is not configured.
		return target{}, errNoModel
	}
	bm, err := modelFromGRPCBody(body)
	if err != nil {
		return target{}, err
	}
	if rpc == "ModelStatistics" && bm.name == "" && (bm.nameSeen || bm.complete) {
		// An empty name asks for the statistics of every model.
		t.reach = reachAllModels
		return t, nil
	}
	if !bm.nameSeen || bm.name == "" {
		return target{}, errNoModel
	}
	if !validModelName(bm.name) || !validVersion(bm.version) {
		return target{}, errBadModel
	}
	t.reach, t.model, t.version = reachModel, bm.name, bm.version
	return t, nil
}

// restTarget maps a KServe v2 REST path. It splits and decodes the path
// the way the worker does (split the escaped path on '/', then decode each
// segment), so both agree on which model a path names.
func restTarget(rawPath string) (target, error) {
	path := rawPath
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if !strings.HasPrefix(path, "/") || strings.IndexByte(path, '#') >= 0 {
		return target{}, errUnknownRoute
	}
	segs := strings.Split(path[1:], "/")
	for i, s := range segs {
		if strings.IndexByte(s, '%') < 0 {
			continue
		}
		v, err := url.PathUnescape(s)
		if err != nil {
			return target{}, errUnknownRoute
		}
		segs[i] = v
	}
	if segs[0] != "v2" {
		return target{}, errUnknownRoute
	}
	segs = segs[1:]
	read := target{action: actionRead, reach: reachServer}
	switch {
	case len(segs) == 0:
		return read, nil
	case segs[0] == "health":
		if len(segs) == 2 && (segs[1] == "live" || segs[1] == "ready") {
			return read, nil
		}
		return target{}, errUnknownRoute
	case segs[0] != "models":
		return target{}, errUnknownRoute
	}
	rest := segs[1:]
	if len(rest) == 1 && rest[0] == "stats" {
		read.reach = reachAllModels
		return read, nil
	}
	if len(rest) == 0 || rest[0] == "" {
		return target{}, errUnknownRoute
	}
	t := target{reach: reachModel, model: rest[0]}
	rest = rest[1:]
	if len(rest) >= 2 && rest[0] == "versions" && isDigits(rest[1]) {
		t.version, rest = rest[1], rest[2:]
	}
	switch {
	case len(rest) == 0:
		t.action = actionRead
	case len(rest) == 1 && (rest[0] == "ready" || rest[0] == "config" || rest[0] == "stats"):
		t.action = actionRead
	case len(rest) == 1 && rest[0] == "infer":
		t.action = actionInfer
	default:
		return target{}, errUnknownRoute
	}
	if !validModelName(t.model) || !validVersion(t.version) {
		return target{}, errBadModel
	}
	return t, nil
}

// validModelName accepts names that are safe as a path segment, a header
// value and a scope token: 1 to 255 bytes of UTF-8 without '/', '\', "..",
// '*', white space or control characters.
func validModelName(s string) bool {
	if s == "" || len(s) > maxModelNameBytes || s == "." || strings.Contains(s, "..") || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '/' || r == '\\' || r == '*' || unicode.IsSpace(r) || unicode.IsControl(r) ||
			r == utf8.RuneError || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// validVersion accepts "" (the server's version policy) or a decimal
// number that fits an int64.
func validVersion(s string) bool {
	return s == "" || (len(s) <= 18 && isDigits(s))
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
