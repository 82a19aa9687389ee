package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/infer"
)

// headerLengthHeader is the binary data extension's header: the size of the
// JSON that starts the body.
const headerLengthHeader = "Inference-Header-Content-Length"

// spanInfer names an HTTP inference request's server span (method and
// route, as otelhttp's semantic conventions do).
const spanInfer = "POST /v2/models/{model}/infer"

// responseBuffers recycles the buffers response JSON is built in; they are
// fully written out before being put back.
var responseBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledBuffer = 1 << 20

// wire.HeaderClient and wire.HeaderModel as net/http stores them: indexing
// the header map with them spares canonicalizing (an allocation) per
// request.
var (
	clientHeaderKey = http.CanonicalHeaderKey(wire.HeaderClient)
	modelHeaderKey  = http.CanonicalHeaderKey(wire.HeaderModel)
	// A traffic policy's (infer.ReadRouting).
	modelVersionHeaderKey = http.CanonicalHeaderKey(wire.HeaderModelVersion)
	shadowHeaderKey       = http.CanonicalHeaderKey(wire.HeaderShadow)
)

// infer serves POST /v2/models/{m}[/versions/{v}]/infer, counting its
// usage unless it is a shadow copy (infer.Routing).
func (h *handler) infer(w http.ResponseWriter, r *http.Request, model, version string, shadow bool) {
	h.traced(r, spanInfer, model, shadow, func(r *http.Request) (*infer.Request, bool) {
		return h.serveInfer(w, r, model, version)
	})
}

// traced runs serve for one inference request of model under a span named
// span (when tracing is on) and records its usage for the client the
// gateway named (when usage is counted and the request is no shadow
// copy).
func (h *handler) traced(r *http.Request, span, model string, shadow bool, serve func(*http.Request) (req *infer.Request, failed bool)) {
	if telemetry.Enabled() {
		ctx, sp := infer.StartSpan(r.Context(), span, propagation.HeaderCarrier(r.Header))
		defer sp.End()
		infer.SetModel(ctx, model)
		r = r.WithContext(ctx)
	}
	var client string
	if h.usage != nil && !shadow {
		if c := r.Header[clientHeaderKey]; len(c) == 1 {
			client = c[0]
		}
	}
	if client == "" {
		serve(r)
		return
	}
	start := time.Now()
	req, failed := serve(r)
	infer.RecordUsage(h.usage, client, r.Header[modelHeaderKey], model, req, failed, start)
}

// serveInfer answers one inference request; req is nil when it was not
// decoded, failed reports an error answer.
func (h *handler) serveInfer(w http.ResponseWriter, r *http.Request, model, version string) (req *infer.Request, failed bool) {
	if !h.allow(w, r, http.MethodPost) {
		return nil, true
	}
	body, err := h.readBody(w, r)
	if err != nil {
		h.writeError(w, r, err)
		return nil, true
	}
	headerLen := len(body)
	if v := r.Header.Get(headerLengthHeader); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			h.writeError(w, r, invalidArg("Unable to parse %s, got: %s", headerLengthHeader, v))
			return nil, true
		}
		if n < 0 || n > len(body) {
			h.writeError(w, r, invalidArg("inference header size should be in range (0, %d), got: %s", len(body), v))
			return nil, true
		}
		headerLen = n
	}

	ctx := r.Context()
	var call *inferCall
	if headerLen == 0 {
		// No JSON at all: the whole body is the model's one input, as in
		// Triton's raw binary requests.
		cfg, err := h.svc.ModelConfig(ctx, model, version)
		if err != nil {
			h.writeError(w, r, err)
			return nil, true
		}
		call, err = decodeRawInput(model, version, cfg, body)
		if err != nil {
			h.writeError(w, r, err)
			return nil, true
		}
	} else {
		call, err = decodeRequest(model, version, body, headerLen, h.maxBytes, h.sharedMemory(r))
		if err != nil {
			h.writeError(w, r, err)
			return nil, true
		}
		defer call.shmOut.Release()
	}

	resp, err := h.svc.Infer(ctx, call.req)
	if err != nil {
		err = h.decoupledInferError(model, version, err)
		infer.SpanError(trace.SpanFromContext(ctx), err)
		h.writeError(w, r, err)
		return call.req, true
	}
	encodeStart := infer.EncodeStart(ctx)

	bufp := responseBuffers.Get().(*[]byte)
	defer func() {
		if cap(*bufp) <= maxPooledBuffer {
			responseBuffers.Put(bufp)
		}
	}()
	header, binaries, err := encodeInferResponse((*bufp)[:0], resp, call)
	*bufp = header[:0]
	if err != nil {
		h.writeError(w, r, err)
		return call.req, true
	}
	h.writeInferResponse(w, r, header, binaries)
	infer.EncodeDone(ctx, encodeStart)
	return call.req, false
}

// writeInferResponse sends the JSON header and then each binary output
// straight from the tensors, without copying them into one buffer.
func (h *handler) writeInferResponse(w http.ResponseWriter, r *http.Request, header []byte, binaries [][]byte) {
	hdr := w.Header()
	if len(binaries) > 0 {
		hdr.Set("Content-Type", "application/octet-stream")
		hdr.Set(headerLengthHeader, strconv.Itoa(len(header)))
	} else {
		hdr.Set("Content-Type", "application/json")
	}
	encoding := "identity"
	if ae := r.Header.Get("Accept-Encoding"); ae != "" {
		encoding = responseEncoding(ae)
	}
	if encoding == "identity" {
		total := len(header)
		for _, b := range binaries {
			total += len(b)
		}
		hdr.Set("Content-Length", strconv.Itoa(total))
	} else {
		hdr.Set("Content-Encoding", encoding)
	}
	w.WriteHeader(http.StatusOK)
	out, closeOut := compressedWriter(w, encoding)
	_, err := out.Write(header)
	for _, b := range binaries {
		if err != nil {
			break
		}
		_, err = out.Write(b)
	}
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	if err != nil {
		// The status is already sent; the client sees a short body.
		h.log.DebugContext(r.Context(), "writing inference response failed", "path", r.URL.Path, "error", err)
	}
}
