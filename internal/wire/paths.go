package wire

import (
	"errors"
	"net/url"
	"strings"
)

// KServe v2 paths.
const (
	// GRPCServicePrefix is the path prefix of every GRPCInferenceService
	// method.
	GRPCServicePrefix    = "/inference.GRPCInferenceService/"
	GRPCModelStreamInfer = GRPCServicePrefix + "ModelStreamInfer"
	GRPCModelInfer       = GRPCServicePrefix + "ModelInfer"

	RESTPrefix       = "/v2"
	RESTModelsPrefix = "/v2/models/"
	RESTServerLive   = "/v2/health/live"
	RESTServerReady  = "/v2/health/ready"

	// RESTSystemSharedMemory and RESTCudaSharedMemory are Triton's shared
	// memory extensions (status, register, unregister below them).
	RESTSystemSharedMemory = "/v2/systemsharedmemory"
	RESTCudaSharedMemory   = "/v2/cudasharedmemory"
	// GenerateStreamSuffix ends Triton's generate_stream path
	// (/v2/models/{m}[/versions/{v}]/generate_stream), answered as
	// server-sent events.
	GenerateStreamSuffix = "/generate_stream"
)

// SharedMemoryThroughGateway is why a shared-memory call or a tensor in a
// shared-memory region is refused through the gateway: the region lives
// on the client's host, which is not the worker's.
const SharedMemoryThroughGateway = "shared memory works only for a client on the worker's host; through the gateway send tensors in the request"

// ErrPath is returned by SplitPath for a path no service routes.
var ErrPath = errors.New("not a routable path")

// RESTModelPath builds /v2/models/{model}[/versions/{version}][/{tail}...],
// escaping the model as one path segment.
func RESTModelPath(model, version string, tail ...string) string {
	var b strings.Builder
	b.WriteString(RESTModelsPrefix)
	b.WriteString(url.PathEscape(model))
	if version != "" {
		b.WriteString("/versions/")
		b.WriteString(version)
	}
	for _, t := range tail {
		b.WriteByte('/')
		b.WriteString(t)
	}
	return b.String()
}

// SplitPath splits an escaped URL path (no query) on '/' and then decodes
// each segment, so that an escaped '/' stays inside its segment:
// "/v2/models/a%2Fb/infer" is "v2", "models", "a/b", "infer". helix-authz
// and the worker both read paths this way and so agree on which model a
// path names.
func SplitPath(escaped string) ([]string, error) {
	if !strings.HasPrefix(escaped, "/") || strings.IndexByte(escaped, '#') >= 0 || strings.IndexByte(escaped, '?') >= 0 {
		return nil, ErrPath
	}
	segs := strings.Split(escaped[1:], "/")
	for i, s := range segs {
		if strings.IndexByte(s, '%') < 0 {
			continue
		}
		v, err := url.PathUnescape(s)
		if err != nil {
			return nil, ErrPath
		}
		segs[i] = v
	}
	return segs, nil
}

// ModelRoute is the part of a path after /v2/models/.
type ModelRoute struct {
	Model string
	// Version is "" without /versions/{v}, else v as sent (digits).
	Version string
	// Rest holds the segments after the model and version ("infer").
	Rest []string
}

// ParseModelRoute reads the segments after "v2", "models":
// {model}[/versions/{digits}]/rest... It reports false when no model is
// named. It does not check the names: callers refuse or answer "not found"
// as their protocol says.
func ParseModelRoute(segs []string) (ModelRoute, bool) {
	if len(segs) == 0 || segs[0] == "" {
		return ModelRoute{}, false
	}
	r := ModelRoute{Model: segs[0], Rest: segs[1:]}
	if len(r.Rest) >= 2 && r.Rest[0] == "versions" && isDigits(r.Rest[1]) {
		r.Version, r.Rest = r.Rest[1], r.Rest[2:]
	}
	return r, true
}
