package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"go.opentelemetry.io/otel/trace"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// Spans of the generate extension's requests.
const (
	spanGenerate       = "POST /v2/models/{model}/generate"
	spanGenerateStream = "POST /v2/models/{model}/generate_stream"
)

// errTooManyResponses ends a /generate request whose model answers more
// than once.
var errTooManyResponses = errors.New("more than one response")

// generate serves Triton's generate extension: POST
// /v2/models/{m}[/versions/{v}]/generate answers one JSON object and
// /generate_stream answers Server-Sent Events, one "data:" event per
// response. The request is a JSON object whose keys name the model's inputs
// (a value is a scalar or an array, its shape taken from the model's
// configuration), with "parameters" (the request's parameters) and any
// other scalar key passed as a parameter too. A response is {"model_name",
// "model_version", <output name>: value, ...}, an output of one element as
// a scalar. Errors before the first event are JSON errors with their HTTP
// status, as on /infer; an error during a stream is an event
// data: {"error": "..."}.
func (h *handler) generate(w http.ResponseWriter, r *http.Request, model, version string, stream, shadow bool) {
	if !h.allow(w, r, http.MethodPost) {
		return
	}
	name := spanGenerate
	if stream {
		name = spanGenerateStream
	}
	h.traced(r, name, model, shadow, func(r *http.Request) (*infer.Request, bool) {
		return h.serveGenerate(w, r, model, version, stream)
	})
}

// serveGenerate answers one generate request; req is nil when it was not
// decoded, failed reports an error answer.
func (h *handler) serveGenerate(w http.ResponseWriter, r *http.Request, model, version string, stream bool) (*infer.Request, bool) {
	ctx := r.Context()
	body, err := h.readBody(w, r)
	if err != nil {
		h.writeError(w, r, err)
		return nil, true
	}
	cfg, err := h.svc.ModelConfig(ctx, model, version)
	if err != nil {
		h.writeError(w, r, err)
		return nil, true
	}
	req, err := decodeGenerateRequest(model, version, cfg, body, h.maxBytes)
	if err != nil {
		h.writeError(w, r, err)
		return nil, true
	}
	if stream {
		return req, h.generateStream(w, r, req)
	}

	var (
		got   *infer.Response
		extra bool
	)
	err = h.inferStream(r, req, func(resp *infer.Response, final bool) error {
		if final && len(resp.Outputs) == 0 {
			return nil // a decoupled model's end of request
		}
		if got != nil {
			extra = true
			return errTooManyResponses
		}
		got = resp
		return nil
	})
	switch {
	case extra:
		err = infer.Errorf(infer.CodeInvalidArgument,
			"model '%s' answered this request with more than one response; use POST /v2/models/%s/generate_stream", model, model)
	case err == nil && got == nil:
		err = infer.Errorf(infer.CodeInvalidArgument,
			"model '%s' answered this request with no response; use POST /v2/models/%s/generate_stream", model, model)
	}
	if err != nil {
		infer.SpanError(trace.SpanFromContext(ctx), err)
		h.writeError(w, r, err)
		return req, true
	}
	out, err := encodeGenerateResponse(got)
	if err != nil {
		h.writeError(w, r, infer.Errorf(infer.CodeInternal, "encoding the response: %w", err))
		return req, true
	}
	h.writeRaw(w, out)
	return req, false
}

// generateStream answers req as Server-Sent Events and reports whether it
// failed.
func (h *handler) generateStream(w http.ResponseWriter, r *http.Request, req *infer.Request) (failed bool) {
	rc := http.NewResponseController(w)
	started := false
	event := func(payload []byte) error {
		if !started {
			started = true
			hdr := w.Header()
			hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
			hdr.Set("Cache-Control", "no-cache")
			// Proxies that buffer (nginx) pass events through at once.
			hdr.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
		}
		var buf bytes.Buffer
		buf.Grow(len(payload) + 8)
		buf.WriteString("data: ")
		buf.Write(payload)
		buf.WriteString("\n\n")
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
		return rc.Flush()
	}
	var writeErr error
	err := h.inferStream(r, req, func(resp *infer.Response, final bool) error {
		if final && len(resp.Outputs) == 0 {
			return nil
		}
		out, err := encodeGenerateResponse(resp)
		if err != nil {
			return infer.Errorf(infer.CodeInternal, "encoding a response: %w", err)
		}
		if err := event(out); err != nil {
			// The client went away: end the request.
			writeErr = err
			return err
		}
		return nil
	})
	if err == nil {
		if !started {
			// No response at all: an empty, well-formed event stream.
			_ = event(nil)
		}
		return false
	}
	infer.SpanError(trace.SpanFromContext(r.Context()), err)
	switch {
	case writeErr != nil:
		h.log.DebugContext(r.Context(), "generate_stream client went away", "path", r.URL.Path, "error", writeErr)
	case !started:
		h.writeError(w, r, err)
	default:
		b, _ := json.Marshal(map[string]string{"error": err.Error()})
		_ = event(b)
	}
	return true
}

// decoupledReporter is implemented by services that serve decoupled models
// (models.Manager).
type decoupledReporter interface {
	ModelDecoupled(model, version string) bool
}

// decoupledInferError gives /infer's refusal of a decoupled model Triton's
// HTTP wording (the service words it for gRPC's ModelInfer). Only the
// error path pays for the check.
func (h *handler) decoupledInferError(model, version string, err error) error {
	d, ok := h.svc.(decoupledReporter)
	if !ok || infer.CodeOf(err) != infer.CodeUnimplemented || !d.ModelDecoupled(model, version) {
		return err
	}
	return infer.Errorf(infer.CodeUnimplemented,
		"HTTP end point doesn't support models with decoupled transaction policy (model '%s' answers a request with zero or more responses: use POST /v2/models/%s/generate_stream or gRPC ModelStreamInfer)",
		model, model)
}

// inferStream runs req through the service's streaming call, or through
// Infer (one final response) for a service without one.
func (h *handler) inferStream(r *http.Request, req *infer.Request, send func(*infer.Response, bool) error) error {
	if ss, ok := h.svc.(infer.StreamService); ok {
		return ss.InferStream(r.Context(), req, send)
	}
	resp, err := h.svc.Infer(r.Context(), req)
	if err != nil {
		return err
	}
	return send(resp, true)
}

// decodeGenerateRequest turns a generate request body into an
// infer.Request for the model configured as cfg.
func decodeGenerateRequest(model, version string, cfg *pb.ModelConfig, body []byte, maxBytes int64) (*infer.Request, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		if err == nil {
			err = errors.New("null")
		}
		return nil, invalidArg("the generate request for model '%s' must be a JSON object: %v", model, err)
	}
	req := &infer.Request{Model: model, Version: version}
	if raw, ok := fields["parameters"]; ok {
		var params map[string]json.RawMessage
		if err := json.Unmarshal(raw, &params); err != nil {
			return nil, invalidArg("'parameters' of the generate request must be a JSON object: %v", err)
		}
		if err := decodeRequestParameters(params, &inferCall{req: req}); err != nil {
			return nil, err
		}
	}
	batched := cfg.GetMaxBatchSize() > 0
	inputs := make(map[string]bool, len(cfg.GetInput()))
	for _, in := range cfg.GetInput() {
		inputs[in.GetName()] = true
		raw, ok := fields[in.GetName()]
		if !ok {
			if in.GetOptional() {
				continue
			}
			return nil, invalidArg("the generate request for model '%s' lacks input '%s'", model, in.GetName())
		}
		t, err := generateInput(in, raw, batched, maxBytes)
		if err != nil {
			return nil, err
		}
		req.Inputs = append(req.Inputs, t)
	}
	for _, key := range sortedKeys(fields) {
		if key == "parameters" || inputs[key] {
			continue
		}
		// Triton passes other keys as parameters.
		v, ok := scalarValue(fields[key])
		if !ok {
			return nil, invalidArg("the generate request's key '%s' is not an input of model '%s', and as a parameter it must be a string, number or boolean", key, model)
		}
		if _, dup := req.Parameters[key]; dup {
			return nil, invalidArg("parameter '%s' is given both in 'parameters' and as a key of the generate request", key)
		}
		if req.Parameters == nil {
			req.Parameters = make(map[string]any)
		}
		req.Parameters[key] = v
	}
	return req, nil
}

// generateInput decodes one input's value: a scalar or a (nested) array,
// shaped by the configured dims, a variable one taking what the value has
// left, with a batch of 1 where the model batches.
func generateInput(in *pb.ModelInput, raw json.RawMessage, batched bool, maxBytes int64) (tensor.Tensor, error) {
	name := in.GetName()
	dt, ok := configDataType(in.GetDataType())
	if !ok {
		return tensor.Tensor{}, invalidArg("input '%s' has datatype %s, which generate cannot send", name, in.GetDataType())
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		raw = append(append([]byte{'['}, raw...), ']')
	}
	n, err := countJSONElements(raw)
	if err != nil {
		return tensor.Tensor{}, invalidArg("input '%s': %v", name, err)
	}
	dims := in.GetDims()
	if in.GetReshape() != nil && len(dims) == 0 {
		dims = []int64{1}
	}
	shape := make([]int64, 0, len(dims)+1)
	if batched {
		shape = append(shape, 1)
	}
	variable, fixed := -1, int64(1)
	for _, d := range dims {
		if d == -1 {
			if variable >= 0 {
				return tensor.Tensor{}, invalidArg("input '%s' has dims %v with more than one variable dimension: generate cannot tell its shape; use /infer", name, dims)
			}
			variable = len(shape)
		} else {
			fixed *= d
		}
		shape = append(shape, d)
	}
	switch {
	case variable >= 0 && fixed > 0 && n%fixed == 0:
		shape[variable] = n / fixed
	case variable < 0 && n == fixed:
	default:
		return tensor.Tensor{}, invalidArg("input '%s' has %d elements, which do not fit its dims %v", name, n, dims)
	}
	data, err := decodeJSONData(raw, dt, n, maxBytes)
	if err != nil {
		return tensor.Tensor{}, invalidArg("input '%s': %v", name, err)
	}
	return tensor.Tensor{Name: name, DataType: dt, Shape: shape, Data: data}, nil
}

// countJSONElements counts the scalars of a (nested) JSON array.
func countJSONElements(raw []byte) (int64, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var n int64
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if depth == 0 && errors.Is(err, io.EOF) {
				return n, nil
			}
			return 0, errors.New("value is not a valid JSON scalar or array")
		}
		switch tok.(type) {
		case json.Delim:
			switch tok {
			case json.Delim('['):
				depth++
				if depth > maxDataDepth {
					return 0, errors.New("value nests arrays too deeply")
				}
			case json.Delim(']'):
				depth--
			default:
				return 0, errors.New("value holds an object; expected scalars or arrays")
			}
		default:
			n++
		}
	}
}

// encodeGenerateResponse writes resp as a generate response object.
func encodeGenerateResponse(resp *infer.Response) ([]byte, error) {
	var b []byte
	b = append(b, `{"model_name":`...)
	b = appendJSONString(b, []byte(resp.Model))
	b = append(b, `,"model_version":`...)
	b = appendJSONString(b, []byte(resp.Version))
	for i := range resp.Outputs {
		t := &resp.Outputs[i]
		if t.Name == "model_name" || t.Name == "model_version" {
			continue
		}
		b = append(b, ',')
		b = appendJSONString(b, []byte(t.Name))
		b = append(b, ':')
		start := len(b)
		var err error
		if b, err = appendJSONData(b, t); err != nil {
			return nil, err
		}
		if n, _ := tensor.ElementCount(t.Shape); n == 1 {
			// One element: the scalar, as text_output is a string.
			inner := append([]byte(nil), b[start+1:len(b)-1]...)
			b = append(b[:start], inner...)
		}
	}
	return append(b, '}'), nil
}
