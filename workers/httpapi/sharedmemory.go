package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/shm"
)

// noCudaSharedMemory answers a CUDA shared memory registration: it needs
// CUDA IPC, which the cuda backend does not offer.
const noCudaSharedMemory = "CUDA shared memory needs the cuda backend on a GPU; this worker has none. Use system shared memory or send tensor data in the request body"

// sharedMemory is how one request may use shared memory: through reg,
// unless refused says why not (the request came through the gateway). A
// nil *sharedMemory means the path serves no shared memory at all.
type sharedMemory struct {
	reg     *shm.Registry
	refused error
}

// sharedMemory returns r's view of the registry.
func (h *handler) sharedMemory(r *http.Request) *sharedMemory {
	if h.shm == nil {
		return nil
	}
	return &sharedMemory{reg: h.shm, refused: infer.CheckSharedMemoryClient(r.Header.Values(wire.HeaderClient))}
}

// input reads an input's data from its region.
func (sm *sharedMemory) input(model, name string, ref shm.Ref) ([]byte, error) {
	switch {
	case sm == nil:
		return nil, infer.Errorf(infer.CodeUnimplemented,
			"input '%s': shared memory is not supported on this endpoint; send the data in the request body", name)
	case sm.refused != nil:
		return nil, sm.refused
	}
	b, err := sm.reg.ReadInput(name, ref)
	if err != nil {
		return nil, invalidArg("model '%s': %w", model, err)
	}
	return b, nil
}

// output binds an output to its region.
func (sm *sharedMemory) output(model, name string, ref shm.Ref) (*shm.Output, error) {
	switch {
	case sm == nil:
		return nil, infer.Errorf(infer.CodeUnimplemented,
			"output '%s': shared memory is not supported on this endpoint; outputs come back in the response", name)
	case sm.refused != nil:
		return nil, sm.refused
	}
	o, err := sm.reg.BindOutput(name, ref)
	if err != nil {
		return nil, invalidArg("model '%s': %w", model, err)
	}
	return o, nil
}

// tensorRef reads a tensor's shared-memory parameters; ok is false when it
// has none.
func tensorRef(what string, params map[string]json.RawMessage) (shm.Ref, bool, error) {
	region, hasRegion := params[shm.ParamRegion]
	size, hasSize := params[shm.ParamByteSize]
	offset, hasOffset := params[shm.ParamOffset]
	if !hasRegion && !hasSize && !hasOffset {
		return shm.Ref{}, false, nil
	}
	return shm.ParseRef(what, jsonParam(region, hasRegion), jsonParam(size, hasSize), jsonParam(offset, hasOffset))
}

// jsonParam is a JSON parameter as a Go value (string, bool, int64, uint64
// past int64, float64); nil when absent. A value of another JSON type
// becomes false, refused by shm.ParseRef as the wrong type.
func jsonParam(raw json.RawMessage, present bool) any {
	if !present {
		return nil
	}
	if u, ok := jsonUint(raw); ok {
		return u
	}
	if v, ok := scalarValue(raw); ok {
		return v
	}
	return false
}

type systemRegionJSON struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Offset   uint64 `json:"offset"`
	ByteSize uint64 `json:"byte_size"`
}

// routeSharedMemory serves Triton's shared-memory endpoints:
// /v2/{system,cuda}sharedmemory[/region/{r}]/{status,register,unregister}.
func (h *handler) routeSharedMemory(w http.ResponseWriter, r *http.Request, kind string, segs []string) bool {
	region := ""
	if len(segs) == 3 && segs[0] == "region" && segs[1] != "" {
		region, segs = segs[1], segs[2:] // SplitPath has unescaped it
	}
	if len(segs) != 1 {
		return false
	}
	switch segs[0] {
	case "status":
		if h.allow(w, r, http.MethodGet) {
			h.sharedMemoryStatus(w, r, kind, region)
		}
	case "register":
		if !h.allow(w, r, http.MethodPost) {
			return true
		}
		if err := infer.CheckSharedMemoryClient(r.Header.Values(wire.HeaderClient)); err != nil {
			h.writeError(w, r, err)
			return true
		}
		switch {
		case kind == "cuda":
			h.writeError(w, r, infer.Errorf(infer.CodeUnimplemented, "%s", noCudaSharedMemory))
		case region == "":
			h.writeError(w, r, invalidArg("register needs a region name: POST /v2/systemsharedmemory/region/{name}/register"))
		case h.shm == nil:
			h.writeError(w, r, infer.Errorf(infer.CodeUnimplemented,
				"system shared memory is not supported by helix-worker; send tensor data in the request body"))
		default:
			h.registerSystem(w, r, region)
		}
	case "unregister":
		if h.allow(w, r, http.MethodPost) {
			// Unknown names are not an error, as in Triton; CUDA regions
			// are never registered.
			if kind == "system" && h.shm != nil {
				h.shm.Unregister(region)
			}
			h.writeRaw(w, nil)
		}
	default:
		return false
	}
	return true
}

func (h *handler) sharedMemoryStatus(w http.ResponseWriter, r *http.Request, kind, region string) {
	if kind == "cuda" || h.shm == nil {
		if region != "" {
			h.writeError(w, r, infer.Errorf(infer.CodeNotFound, "Unable to find %s shared memory region: '%s'", kind, region))
			return
		}
		h.writeRaw(w, []byte("[]"))
		return
	}
	regions, err := h.shm.Status(region)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]systemRegionJSON, len(regions))
	for i, s := range regions {
		out[i] = systemRegionJSON{Name: s.Name, Key: s.Key, Offset: s.Offset, ByteSize: s.ByteSize}
	}
	h.writeJSON(w, r, out)
}

// registerRequestJSON is the body of a system register request; fields
// stay raw so that each is checked and named on its own.
type registerRequestJSON struct {
	Key      json.RawMessage `json:"key"`
	Offset   json.RawMessage `json:"offset"`
	ByteSize json.RawMessage `json:"byte_size"`
}

func (h *handler) registerSystem(w http.ResponseWriter, r *http.Request, region string) {
	body, err := h.readBody(w, r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	key, offset, size, err := parseRegister(body)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.shm.Register(region, key, offset, size); err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeRaw(w, nil)
}

// parseRegister decodes {"key": string, "offset": uint, "byte_size": uint}
// (offset optional, 0 by default).
func parseRegister(body []byte) (key string, offset, size uint64, err error) {
	var rj registerRequestJSON
	if err := json.Unmarshal(body, &rj); err != nil {
		return "", 0, 0, jsonError("shared memory register request", err)
	}
	if rj.Key == nil || json.Unmarshal(rj.Key, &key) != nil {
		return "", 0, 0, invalidArg("shared memory register request needs 'key', a string such as \"/input_data\"")
	}
	if rj.ByteSize == nil {
		return "", 0, 0, invalidArg("shared memory register request needs 'byte_size'")
	}
	if size, err = registerUint("byte_size", rj.ByteSize); err != nil {
		return "", 0, 0, err
	}
	if rj.Offset != nil && !bytes.Equal(bytes.TrimSpace(rj.Offset), []byte("null")) {
		if offset, err = registerUint("offset", rj.Offset); err != nil {
			return "", 0, 0, err
		}
	}
	return key, offset, size, nil
}

func registerUint(field string, raw json.RawMessage) (uint64, error) {
	v, ok := jsonUint(raw)
	if !ok {
		return 0, invalidArg("shared memory register request: '%s' must be a non-negative integer, got %s", field, bytes.TrimSpace(raw))
	}
	return v, nil
}
