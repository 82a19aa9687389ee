package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/helixflow/helixflow/workers/infer"
)

// routeRepository handles the model repository extension:
// /v2/repository[/{repo}]/index and
// /v2/repository[/{repo}]/models/{m}/(load|unload).
func (h *handler) routeRepository(w http.ResponseWriter, r *http.Request, segs []string) bool {
	repo := ""
	if len(segs) == 2 && segs[1] == "index" || len(segs) == 4 && segs[1] == "models" {
		repo, segs = segs[0], segs[1:]
		if repo == "" {
			return false
		}
	}
	switch {
	case len(segs) == 1 && segs[0] == "index":
		h.repositoryIndex(w, r)
	case len(segs) == 3 && segs[0] == "models" && segs[1] != "" && (segs[2] == "load" || segs[2] == "unload"):
		if !h.allow(w, r, http.MethodPost) {
			return true
		}
		if repo != "" {
			h.writeError(w, r, infer.Errorf(infer.CodeUnimplemented, "'repository_name' specification is not supported"))
			return true
		}
		if segs[2] == "load" {
			h.loadModel(w, r, segs[1])
		} else {
			h.unloadModel(w, r, segs[1])
		}
	default:
		return false
	}
	return true
}

// readJSONObject reads an optional JSON object body; an empty body gives
// an empty object.
func (h *handler) readJSONObject(w http.ResponseWriter, r *http.Request, what string) (map[string]json.RawMessage, error) {
	body, err := h.readBody(w, r)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, jsonError(what, err)
	}
	if obj == nil { // the body was null
		obj = map[string]json.RawMessage{}
	}
	return obj, nil
}

type indexEntryJSON struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	State   string `json:"state,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

func (h *handler) repositoryIndex(w http.ResponseWriter, r *http.Request) {
	if !h.allow(w, r, http.MethodPost) {
		return
	}
	obj, err := h.readJSONObject(w, r, "repository index request")
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	ready := false
	if raw, ok := obj["ready"]; ok {
		if ready, ok = jsonBool(raw); !ok {
			h.writeError(w, r, invalidArg("Invalid value for 'ready': expected a boolean"))
			return
		}
	}
	entries, err := h.svc.RepositoryIndex(r.Context(), ready)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]indexEntryJSON, 0, len(entries))
	for _, e := range entries {
		out = append(out, indexEntryJSON{Name: e.Name, Version: e.Version, State: string(e.State), Reason: e.Reason})
	}
	h.writeJSON(w, r, out)
}

func (h *handler) loadModel(w http.ResponseWriter, r *http.Request, model string) {
	obj, err := h.readJSONObject(w, r, "load model request")
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	opts, err := loadOptions(obj["parameters"])
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.svc.LoadModel(r.Context(), model, opts); err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeRaw(w, nil)
}

// loadOptions reads the load parameters: "config" (a ModelConfig in JSON)
// and "file:<version>/<name>" entries holding base64 file contents.
func loadOptions(rawParams json.RawMessage) (infer.LoadOptions, error) {
	var opts infer.LoadOptions
	if rawParams == nil {
		return opts, nil
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(rawParams, &params); err != nil {
		return opts, jsonError("load model 'parameters'", err)
	}
	for _, key := range sortedKeys(params) {
		var value string
		if err := json.Unmarshal(params[key], &value); err != nil {
			return opts, invalidArg("load parameter '%s' must be a string", key)
		}
		switch {
		case key == "config":
			opts.ConfigJSON = value
		case strings.HasPrefix(key, "file:"):
			content, err := base64.StdEncoding.DecodeString(value)
			if err != nil {
				return opts, invalidArg("unable to decode '%s' as base64: %v", key, err)
			}
			if opts.Files == nil {
				opts.Files = make(map[string][]byte)
			}
			opts.Files[key] = content
		default:
			return opts, invalidArg("unknown load parameter '%s': expected 'config' or 'file:<version>/<name>'", key)
		}
	}
	return opts, nil
}

func (h *handler) unloadModel(w http.ResponseWriter, r *http.Request, model string) {
	obj, err := h.readJSONObject(w, r, "unload model request")
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	dependents := false
	if rawParams, ok := obj["parameters"]; ok {
		var params map[string]json.RawMessage
		if err := json.Unmarshal(rawParams, &params); err != nil {
			h.writeError(w, r, jsonError("unload model 'parameters'", err))
			return
		}
		if raw, ok := params["unload_dependents"]; ok {
			if dependents, ok = jsonBool(raw); !ok {
				h.writeError(w, r, invalidArg("Unable to parse 'unload_dependents': expected a boolean, got %s", raw))
				return
			}
		}
	}
	if err := h.svc.UnloadModel(r.Context(), model, dependents); err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeRaw(w, nil)
}
