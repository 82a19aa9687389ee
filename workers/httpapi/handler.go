// Package httpapi serves the KServe v2 HTTP/REST protocol the way Triton's
// HTTP server does (src/http_server.cc), so that tritonclient.http and
// perf_analyzer work unchanged: the same routes, JSON shapes, binary data
// extension, compression handling and HTTP status codes. It only translates;
// every decision about models and inference belongs to the infer.Service.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/shm"
)

// DefaultMaxRequestBytes is Triton's default --http-max-input-size (64 MiB).
const DefaultMaxRequestBytes = 64 << 20

// Options configures the handler.
type Options struct {
	// MaxRequestBytes caps a request body, before and after decompression,
	// and the decoded size of a JSON input. 0 means DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// MaxDecompressedBytes caps what a compressed body (Content-Encoding
	// gzip or deflate) decompresses to: tighter than MaxRequestBytes, as a
	// few kilobytes on the wire can inflate a thousandfold. 0 means a
	// quarter of MaxRequestBytes; it never exceeds MaxRequestBytes.
	MaxDecompressedBytes int64
	// Logger receives request errors; nil means slog.Default().
	Logger *slog.Logger
	// Usage, when set, counts every inference request that carries
	// wire.HeaderClient (see infer.RecordUsage).
	Usage *usage.Aggregator
	// WebSocket, when set, serves GET /v2/models/{m}[/versions/{v}]/infer/ws
	// (workers/wsapi); without it that path is 404.
	WebSocket WebSocketHandler
	// SharedMemory, when set, serves Triton's system shared memory
	// extension from this registry (share one with the gRPC front end);
	// nil: registration is 501 and the status lists no regions.
	SharedMemory *shm.Registry
}

// WebSocketHandler serves a model's WebSocket inference endpoint; the
// handler has already checked the path's model against the gateway's and
// normalized the version.
type WebSocketHandler interface {
	ServeInferWS(w http.ResponseWriter, r *http.Request, model, version string)
}

type handler struct {
	svc             infer.Service
	maxBytes        int64
	maxDecompressed int64
	log             *slog.Logger
	usage           *usage.Aggregator
	ws              WebSocketHandler
	shm             *shm.Registry
}

// NewHandler returns the KServe v2 HTTP handler for svc.
func NewHandler(svc infer.Service, opts Options) http.Handler {
	h := &handler{svc: svc, maxBytes: opts.MaxRequestBytes, log: opts.Logger, usage: opts.Usage, ws: opts.WebSocket, shm: opts.SharedMemory}
	if h.maxBytes <= 0 {
		h.maxBytes = DefaultMaxRequestBytes
	}
	h.maxDecompressed = opts.MaxDecompressedBytes
	if h.maxDecompressed <= 0 {
		h.maxDecompressed = h.maxBytes / 4
	}
	h.maxDecompressed = min(h.maxDecompressed, h.maxBytes)
	if h.log == nil {
		h.log = slog.Default()
	}
	return h
}

// ServeHTTP routes as Triton's HTTPAPIServer::Handle does: exact paths,
// versions made of digits, everything else 404 {"error":"Not Found"}.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	segs, err := wire.SplitPath(r.URL.EscapedPath())
	if err != nil || segs[0] != "v2" {
		h.notFound(w, r)
		return
	}
	segs = segs[1:]
	if len(segs) == 0 {
		h.serverMetadata(w, r)
		return
	}
	switch segs[0] {
	case "health":
		if len(segs) == 2 && (segs[1] == "live" || segs[1] == "ready") {
			h.health(w, r, segs[1])
			return
		}
	case "models":
		if h.routeModels(w, r, segs[1:]) {
			return
		}
	case "repository":
		if h.routeRepository(w, r, segs[1:]) {
			return
		}
	case "systemsharedmemory":
		if h.routeSharedMemory(w, r, "system", segs[1:]) {
			return
		}
	case "cudasharedmemory":
		if h.routeSharedMemory(w, r, "cuda", segs[1:]) {
			return
		}
	case "trace":
		if len(segs) == 2 && segs[1] == "setting" {
			h.unavailableFeature(w, r, "trace settings are not supported by helix-worker")
			return
		}
	case "logging":
		if len(segs) == 1 {
			h.unavailableFeature(w, r, "dynamic logging settings are not supported by helix-worker")
			return
		}
	}
	h.notFound(w, r)
}

// routeModels handles /v2/models/... and reports whether the path matched.
// Every route refuses a path whose model is not the one the gateway
// authorized, as the gRPC front end does.
func (h *handler) routeModels(w http.ResponseWriter, r *http.Request, segs []string) bool {
	if len(segs) == 1 && segs[0] == "stats" {
		if h.gatewayModel(w, r, "") {
			h.modelStats(w, r, "", "")
		}
		return true
	}
	mr, ok := wire.ParseModelRoute(segs)
	if !ok {
		return false
	}
	model, version := mr.Model, mr.Version
	if !h.gatewayModel(w, r, model) {
		return true
	}
	switch rest := mr.Rest; {
	case len(rest) == 0:
		h.withVersion(w, r, version, func(v string) { h.modelMetadata(w, r, model, v) })
	case len(rest) == 1 && rest[0] == "ready":
		h.withVersion(w, r, version, func(v string) { h.modelReady(w, r, model, v) })
	case len(rest) == 1 && rest[0] == "config":
		h.withVersion(w, r, version, func(v string) { h.modelConfig(w, r, model, v) })
	case len(rest) == 1 && rest[0] == "stats":
		h.withVersion(w, r, version, func(v string) { h.modelStats(w, r, model, v) })
	case len(rest) == 1 && rest[0] == "infer":
		h.withRouting(w, r, version, func(v string, rt infer.Routing) { h.infer(w, r, model, v, rt.Shadow) })
	case len(rest) == 2 && rest[0] == "infer" && rest[1] == "ws" && h.ws != nil:
		// A handshake is a GET (RFC 6455 4.1); any other method is 405
		// with Allow, not the WebSocket library's 426. The WebSocket
		// server reads wire.HeaderShadow itself.
		if h.allow(w, r, http.MethodGet) {
			h.withRouting(w, r, version, func(v string, _ infer.Routing) { h.ws.ServeInferWS(w, r, model, v) })
		}
	case len(rest) == 1 && (rest[0] == "generate" || rest[0] == "generate_stream"):
		h.withRouting(w, r, version, func(v string, rt infer.Routing) { h.generate(w, r, model, v, rest[0] == "generate_stream", rt.Shadow) })
	case len(rest) == 2 && rest[0] == "trace" && rest[1] == "setting" && version == "":
		h.unavailableFeature(w, r, "trace settings are not supported by helix-worker")
	default:
		return false
	}
	return true
}

// gatewayModel answers 400 and reports false when model is not the one
// the gateway authorized (infer.CheckGatewayModel).
func (h *handler) gatewayModel(w http.ResponseWriter, r *http.Request, model string) bool {
	if err := infer.CheckGatewayModel(r.Header.Values(wire.HeaderModel), model); err != nil {
		h.writeError(w, r, err)
		return false
	}
	return true
}

// withVersion normalizes a version from the path ("007" is version 7, as
// Triton's std::stol reads it) before calling next.
func (h *handler) withVersion(w http.ResponseWriter, r *http.Request, version string, next func(string)) {
	if version != "" {
		v, err := strconv.ParseInt(version, 10, 64)
		if err != nil {
			h.writeError(w, r, invalidArg(
				"failed to get model version from specified version string '%s' (details: %v), version should be an integral value > 0",
				version, err))
			return
		}
		version = strconv.FormatInt(v, 10)
	}
	next(version)
}

// withRouting is withVersion for an inference route, which a traffic
// policy's Envoy route may mark (infer.Routing): a request whose path
// names no version is served by the version the policy chose.
func (h *handler) withRouting(w http.ResponseWriter, r *http.Request, version string, next func(string, infer.Routing)) {
	rt, err := infer.ReadRouting(r.Header[modelVersionHeaderKey], r.Header[shadowHeaderKey])
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.withVersion(w, r, rt.VersionFor(version), func(v string) { next(v, rt) })
}

// allow answers 405 unless r uses one of methods.
func (h *handler) allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	h.writeErrorStatus(w, r, http.StatusMethodNotAllowed, "Method Not Allowed", nil)
	return false
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.writeErrorStatus(w, r, http.StatusNotFound, "Not Found", nil)
}

// unavailableFeature answers as a Triton built without the feature does:
// UNAVAILABLE, that is 503.
func (h *handler) unavailableFeature(w http.ResponseWriter, r *http.Request, msg string) {
	if h.allow(w, r, http.MethodGet, http.MethodPost) {
		h.writeError(w, r, infer.Errorf(infer.CodeUnavailable, "%s", msg))
	}
}

// httpStatus maps an error to the status Triton's HttpCodeFromError gives
// its code; a body too large is 413 and an unsupported Content-Encoding
// 415, as Triton answers them outside that mapping. ResourceExhausted (our queue is full) is 429; a request that
// timed out in the queue is 503, as Triton's UNAVAILABLE "Request timeout
// expired" is.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errUnsupportedEncoding):
		return http.StatusUnsupportedMediaType
	}
	var e *infer.Error
	if !errors.As(err, &e) {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return http.StatusServiceUnavailable
		case errors.Is(err, context.Canceled):
			return http.StatusBadRequest
		}
		return http.StatusInternalServerError
	}
	switch e.Code {
	case infer.CodeInvalidArgument, infer.CodeAlreadyExists, infer.CodeCancelled, infer.CodeFailedPrecondition:
		return http.StatusBadRequest
	case infer.CodeNotFound:
		return http.StatusNotFound
	case infer.CodeUnavailable, infer.CodeDeadlineExceeded:
		return http.StatusServiceUnavailable
	case infer.CodeUnimplemented:
		return http.StatusNotImplemented
	case infer.CodeResourceExhausted:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	h.writeErrorStatus(w, r, httpStatus(err), err.Error(), err)
}

func (h *handler) writeErrorStatus(w http.ResponseWriter, r *http.Request, status int, msg string, err error) {
	level := slog.LevelDebug
	if status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusNotImplemented {
		level = slog.LevelError
	}
	h.log.Log(r.Context(), level, "http request failed",
		"method", r.Method, "path", r.URL.Path, "status", status, "error", msg)
	hdr := w.Header()
	body := errorBody(msg)
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeJSON answers 200 with v as compact JSON, without HTML escaping
// (Triton's writer does not escape '<', '>' or '&').
func (h *handler) writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		h.writeError(w, r, infer.Errorf(infer.CodeInternal, "encoding the response: %w", err))
		return
	}
	h.writeRaw(w, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

func (h *handler) writeRaw(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (h *handler) health(w http.ResponseWriter, r *http.Request, kind string) {
	if !h.allow(w, r, http.MethodGet) {
		return
	}
	ok := h.svc.Live()
	if kind == "ready" {
		ok = h.svc.Ready()
	}
	// Triton answers health with a bare status: 200, or 400 when not.
	w.Header().Set("Content-Length", "0")
	if ok {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusBadRequest)
	}
}

type serverMetadataJSON struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

func (h *handler) serverMetadata(w http.ResponseWriter, r *http.Request) {
	if !h.allow(w, r, http.MethodGet) {
		return
	}
	md := h.svc.ServerMetadata()
	ext := md.Extensions
	if ext == nil {
		ext = []string{}
	}
	h.writeJSON(w, r, serverMetadataJSON{Name: md.Name, Version: md.Version, Extensions: ext})
}

type modelMetadataJSON struct {
	Name     string               `json:"name"`
	Versions []string             `json:"versions"`
	Platform string               `json:"platform"`
	Inputs   []tensorMetadataJSON `json:"inputs"`
	Outputs  []tensorMetadataJSON `json:"outputs"`
}

type tensorMetadataJSON struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func tensorMetadata(ts []infer.TensorMetadata) []tensorMetadataJSON {
	out := make([]tensorMetadataJSON, 0, len(ts))
	for _, t := range ts {
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		out = append(out, tensorMetadataJSON{Name: t.Name, Datatype: string(t.DataType), Shape: shape})
	}
	return out
}

func (h *handler) modelMetadata(w http.ResponseWriter, r *http.Request, model, version string) {
	if !h.allow(w, r, http.MethodGet) {
		return
	}
	md, err := h.svc.ModelMetadata(r.Context(), model, version)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	versions := md.Versions
	if versions == nil {
		versions = []string{}
	}
	h.writeJSON(w, r, modelMetadataJSON{
		Name:     md.Name,
		Versions: versions,
		Platform: md.Platform,
		Inputs:   tensorMetadata(md.Inputs),
		Outputs:  tensorMetadata(md.Outputs),
	})
}

func (h *handler) modelReady(w http.ResponseWriter, r *http.Request, model, version string) {
	if !h.allow(w, r, http.MethodGet) {
		return
	}
	ready, err := h.svc.ModelReady(r.Context(), model, version)
	switch {
	case err != nil:
		h.writeError(w, r, err)
	case !ready:
		h.writeErrorStatus(w, r, http.StatusBadRequest, "Model version not ready", nil)
	default:
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	}
}

func (h *handler) modelConfig(w http.ResponseWriter, r *http.Request, model, version string) {
	if !h.allow(w, r, http.MethodGet) {
		return
	}
	cfg, err := h.svc.ModelConfig(r.Context(), model, version)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	body, err := marshalConfigJSON(cfg)
	if err != nil {
		h.writeError(w, r, infer.Errorf(infer.CodeInternal, "encoding the configuration of model '%s': %w", model, err))
		return
	}
	h.writeRaw(w, body)
}

func (h *handler) modelStats(w http.ResponseWriter, r *http.Request, model, version string) {
	if !h.allow(w, r, http.MethodGet) {
		return
	}
	stats, err := h.svc.ModelStatistics(r.Context(), model, version)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.writeJSON(w, r, statsJSON(stats))
}
