package check

import (
	"errors"
	"strings"

	"github.com/helixflow/helixflow/internal/wire"
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
	// stream: a long-lived stream whose messages the worker counts one by
	// one (ModelStreamInfer, a WebSocket); ws: the WebSocket upgrade
	// (/v2/models/{m}[/versions/{v}]/infer/ws).
	stream, ws bool
	// sequence is wire.HeaderSequence's value: the request's Triton
	// sequence_id ("" when it has none or it was not seen).
	sequence string
}

// Denials of parseTarget.
var (
	errUnknownRoute = errors.New("route not allowed")
	errBadModel     = errors.New("invalid model name")
	errNoModel      = errors.New("model name not found in request")
	errNotGRPC      = errors.New("gRPC method without gRPC content type")
	// errSharedMemory: Triton's shared-memory calls cannot work through
	// the gateway (wire.SharedMemoryThroughGateway).
	errSharedMemory = errors.New("shared memory through the gateway")
)

// parseTarget finds what the request asks for from the method, the request
// target as Envoy saw it (path and query, not decoded), the first bytes of
// the body (gRPC: the model and a ModelInfer's sequence_id; REST: an
// inference's sequence_id, when the route sends a body), and for a stream
// the model the client named in wire.HeaderStreamModel ("" if none).
func parseTarget(method, rawPath string, body []byte, grpcCaller bool, streamModel string) (target, error) {
	if rpc, ok := strings.CutPrefix(rawPath, wire.GRPCServicePrefix); ok {
		if !grpcCaller || method != "POST" {
			return target{}, errNotGRPC
		}
		return grpcTarget(rpc, body, streamModel)
	}
	return restTarget(rawPath, body)
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
		t.action, t.reach, t.stream = actionInfer, reachAllModels, true
		if streamModel != "" {
			if wire.CheckModelName(streamModel) != nil {
				return target{}, errBadModel
			}
			t.reach, t.model = reachModel, streamModel
		}
		return t, nil
	case "ModelReady", "ModelMetadata", "ModelConfig", "ModelStatistics":
		t.action = actionRead
	case "ModelInfer":
		t.action = actionInfer
	case "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
		"CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister":
		return target{rpc: rpc}, errSharedMemory
	default:
		return target{}, errUnknownRoute
	}
	if len(body) == 0 {
		// Envoy sent no body: with_request_body is not configured.
		return target{}, errNoModel
	}
	bm, err := readGRPCBody(body, t.action == actionInfer)
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
	if !validTarget(bm.name, bm.version) {
		return target{}, errBadModel
	}
	t.reach, t.model, t.version, t.sequence = reachModel, bm.name, bm.version, bm.sequence
	return t, nil
}

// restTarget maps a KServe v2 REST path. It splits and decodes the path
// as the worker does (wire.SplitPath), so both agree on which model a path
// names. An inference's body, when the route sent one, gives its
// sequence_id.
func restTarget(rawPath string, body []byte) (target, error) {
	path, _, _ := strings.Cut(rawPath, "?")
	segs, err := wire.SplitPath(path)
	if err != nil || segs[0] != "v2" {
		return target{}, errUnknownRoute
	}
	segs = segs[1:]
	read := target{action: actionRead, reach: reachServer}
	switch {
	case len(segs) == 0:
		return read, nil
	case segs[0] == "systemsharedmemory" || segs[0] == "cudasharedmemory":
		return target{}, errSharedMemory
	case segs[0] == "health":
		if len(segs) == 2 && (segs[1] == "live" || segs[1] == "ready") {
			return read, nil
		}
		return target{}, errUnknownRoute
	case segs[0] != "models":
		return target{}, errUnknownRoute
	}
	if len(segs) == 2 && segs[1] == "stats" {
		read.reach = reachAllModels
		return read, nil
	}
	mr, ok := wire.ParseModelRoute(segs[1:])
	if !ok {
		return target{}, errUnknownRoute
	}
	t := target{reach: reachModel, model: mr.Model, version: mr.Version}
	switch rest := mr.Rest; {
	case len(rest) == 0:
		t.action = actionRead
	case len(rest) == 1 && (rest[0] == "ready" || rest[0] == "config" || rest[0] == "stats"):
		t.action = actionRead
	case len(rest) == 1 && (rest[0] == "infer" || rest[0] == "generate"):
		// Both carry "parameters" at the top of their JSON object.
		t.action = actionInfer
		if len(body) > 0 {
			t.sequence = sequenceFromJSONBody(body)
		}
	case len(rest) == 1 && rest[0] == "generate_stream":
		// Triton's generate extension: one request, answered as
		// server-sent events; counted as one request.
		t.action = actionInfer
	case len(rest) == 2 && rest[0] == "infer" && rest[1] == "ws":
		// The WebSocket upgrade (wire.WSPathSuffix): inference on the model.
		t.action, t.stream, t.ws = actionInfer, true, true
	default:
		return target{}, errUnknownRoute
	}
	if !validTarget(t.model, t.version) {
		return target{}, errBadModel
	}
	return t, nil
}

// validTarget checks a model name and a version, "" meaning the server's
// version policy.
func validTarget(model, version string) bool {
	return wire.CheckModelName(model) == nil && (version == "" || wire.CheckVersion(version) == nil)
}

// isWSPath reports whether a raw request target (path and query) ends
// with wire.WSPathSuffix: only there may a credential come in the
// WebSocket subprotocols. parseTarget decides whether it is one.
func isWSPath(rawPath string) bool {
	path, _, _ := strings.Cut(rawPath, "?")
	return strings.HasSuffix(path, wire.WSPathSuffix)
}
