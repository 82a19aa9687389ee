package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/shm"
	"github.com/helixflow/helixflow/workers/tensor"
)

// inferRequestJSON is the JSON part of a KServe v2 inference request.
// Data stays raw so that jsondata.go can decode it straight into bytes.
type inferRequestJSON struct {
	ID         *string                    `json:"id"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Inputs     []inputJSON                `json:"inputs"`
	Outputs    []outputJSON               `json:"outputs"`
}

type inputJSON struct {
	Name       *string                    `json:"name"`
	Shape      []int64                    `json:"shape"`
	Datatype   *string                    `json:"datatype"`
	Parameters map[string]json.RawMessage `json:"parameters"`
	Data       json.RawMessage            `json:"data"`
}

type outputJSON struct {
	Name       *string                    `json:"name"`
	Parameters map[string]json.RawMessage `json:"parameters"`
}

// outputOptions is how the client wants one output sent back.
type outputOptions struct {
	binary bool
}

// inferCall is a decoded HTTP inference request: what to ask the Service
// and how to encode its answer.
type inferCall struct {
	req           *infer.Request
	defaultBinary bool
	outputs       map[string]outputOptions
	// shmOut are the outputs asked for in shared memory; the caller
	// releases them once the response is encoded (Release is nil-safe).
	shmOut shm.Outputs
}

func (c *inferCall) optionsFor(name string) outputOptions {
	if o, ok := c.outputs[name]; ok {
		return o
	}
	return outputOptions{binary: c.defaultBinary}
}

func invalidArg(format string, args ...any) *infer.Error {
	return infer.Errorf(infer.CodeInvalidArgument, format, args...)
}

// Per-tensor parameters of Triton's shared-memory extension.
var sharedMemoryParams = []string{shm.ParamRegion, shm.ParamOffset, shm.ParamByteSize}

// decodeInferRequest decodes an inference request body. The first headerLen
// bytes are the JSON header; the rest are the binary inputs, in input order,
// for inputs with a binary_data_size. Binary input data aliases body.
// maxBytes bounds the decoded size of each JSON-encoded input. Tensors in
// shared memory are refused: the REST infer route calls decodeRequest.
func decodeInferRequest(model, version string, body []byte, headerLen int, maxBytes int64) (*inferCall, error) {
	return decodeRequest(model, version, body, headerLen, maxBytes, nil)
}

// decodeRequest is decodeInferRequest with shared memory served by sm (nil:
// refused). Inputs in shared memory are copied out of their regions; the
// outputs asked for in shared memory are bound in the call's shmOut.
func decodeRequest(model, version string, body []byte, headerLen int, maxBytes int64, sm *sharedMemory) (_ *inferCall, err error) {
	if headerLen < 0 || headerLen > len(body) {
		return nil, invalidArg("inference header size should be in range [0, %d], got %d", len(body), headerLen)
	}
	var rj inferRequestJSON
	if err := json.Unmarshal(body[:headerLen], &rj); err != nil {
		return nil, jsonError("inference request", err)
	}
	req := &infer.Request{Model: model, Version: version}
	call := &inferCall{req: req}
	defer func() {
		if err != nil {
			call.shmOut.Release()
		}
	}()
	if rj.ID != nil {
		req.ID = *rj.ID
	}
	if err := decodeRequestParameters(rj.Parameters, call); err != nil {
		return nil, err
	}
	if rj.Inputs == nil {
		return nil, invalidArg("inference request has no 'inputs' array")
	}
	binaryData := body[headerLen:]
	req.Inputs = make([]tensor.Tensor, 0, len(rj.Inputs))
	seen := make(map[string]bool, len(rj.Inputs))
	for i := range rj.Inputs {
		t, err := decodeInput(&rj.Inputs[i], i, &binaryData, model, maxBytes, sm)
		if err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, invalidArg("input '%s' is given more than once", t.Name)
		}
		seen[t.Name] = true
		req.Inputs = append(req.Inputs, t)
	}
	if len(binaryData) != 0 {
		return nil, invalidArg("unexpected additional input data for model '%s': %d bytes after the last binary input", model, len(binaryData))
	}
	if err := decodeRequestedOutputs(rj.Outputs, call, sm); err != nil {
		return nil, err
	}
	return call, nil
}

// decodeRequestParameters applies the request-level parameters Triton
// interprets and passes the others through.
func decodeRequestParameters(params map[string]json.RawMessage, call *inferCall) error {
	req := call.req
	for _, key := range sortedKeys(params) {
		raw := params[key]
		switch {
		case key == "binary_data_output":
			b, ok := jsonBool(raw)
			if !ok {
				return invalidArg("Unable to parse 'binary_data_output': expected a boolean, got %s", raw)
			}
			call.defaultBinary = b
		case key == "timeout":
			us, ok := jsonUint(raw)
			if !ok {
				return invalidArg("Unable to parse 'timeout': expected microseconds as a non-negative integer, got %s", raw)
			}
			req.Timeout = time.Duration(min(us, uint64(math.MaxInt64/int64(time.Microsecond)))) * time.Microsecond
		case key == "priority":
			p, ok := jsonUint(raw)
			if !ok {
				return invalidArg("Unable to parse 'priority': expected a non-negative integer, got %s", raw)
			}
			req.Priority = p
		case strings.HasPrefix(key, "triton_"):
			return invalidArg("parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified.")
		default:
			v, err := parameterValue(key, raw)
			if err != nil {
				return err
			}
			if req.Parameters == nil {
				req.Parameters = make(map[string]any)
			}
			req.Parameters[key] = v
		}
	}
	return nil
}

// parameterValue converts a JSON parameter to the Go value infer.Request
// carries: bool, int64, float64 or string, checking the sequence parameters
// as Triton does.
func parameterValue(key string, raw json.RawMessage) (any, error) {
	switch key {
	case "sequence_id":
		if v, ok := jsonUint(raw); ok {
			return int64(v), nil
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s, nil
		}
		return nil, invalidArg("Unable to parse 'sequence_id': expected a non-negative integer or a string, got %s", raw)
	case "sequence_start", "sequence_end":
		b, ok := jsonBool(raw)
		if !ok {
			return nil, invalidArg("Unable to parse '%s': expected a boolean, got %s", key, raw)
		}
		return b, nil
	}
	if v, ok := scalarValue(raw); ok {
		return v, nil
	}
	return nil, invalidArg("parameter '%s' has invalid type. It should be either 'int', 'bool', or 'string'.", key)
}

// scalarValue decodes a JSON string, bool or number. Integers that fit
// int64 stay integers, as Triton keeps them.
func scalarValue(raw json.RawMessage) (any, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, false
		}
		return s, true
	case c == 't' || c == 'f':
		return jsonBool(raw)
	case c == '-' || (c >= '0' && c <= '9'):
		if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return i, true
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return nil, false
		}
		return f, true
	}
	return nil, false
}

func jsonBool(raw json.RawMessage) (bool, bool) {
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// jsonUint accepts a non-negative JSON integer.
func jsonUint(raw json.RawMessage) (uint64, bool) {
	v, err := strconv.ParseUint(string(bytes.TrimSpace(raw)), 10, 64)
	return v, err == nil
}

// decodeInput decodes one input. Binary inputs take their bytes from the
// front of *binaryData.
func decodeInput(in *inputJSON, index int, binaryData *[]byte, model string, maxBytes int64, sm *sharedMemory) (tensor.Tensor, error) {
	if in.Name == nil {
		return tensor.Tensor{}, invalidArg("input %d has no 'name'", index)
	}
	name := *in.Name
	if in.Datatype == nil {
		return tensor.Tensor{}, invalidArg("input '%s' has no 'datatype'", name)
	}
	dt, err := tensor.ParseDataType(*in.Datatype)
	if err != nil {
		return tensor.Tensor{}, invalidArg("input '%s' has unknown datatype '%s'", name, *in.Datatype)
	}
	if in.Shape == nil {
		return tensor.Tensor{}, invalidArg("input '%s' has no 'shape'", name)
	}
	n, err := tensor.ElementCount(in.Shape)
	if err != nil {
		return tensor.Tensor{}, invalidArg("input '%s' has invalid shape %v: %w", name, in.Shape, err)
	}
	binarySize, isBinary, err := inputContent(in, name)
	if err != nil {
		return tensor.Tensor{}, err
	}
	t := tensor.Tensor{Name: name, DataType: dt, Shape: in.Shape}
	ref, inShm, err := tensorRef("input '"+name+"'", in.Parameters)
	if err != nil {
		return tensor.Tensor{}, err
	}
	if inShm {
		if t.Data, err = sm.input(model, name, ref); err != nil {
			return tensor.Tensor{}, err
		}
	} else if isBinary {
		rest := *binaryData
		if binarySize > uint64(len(rest)) {
			return tensor.Tensor{}, invalidArg(
				"unexpected size for input '%s': binary_data_size is %d bytes but only %d bytes of binary data are left for model '%s'",
				name, binarySize, len(rest), model)
		}
		t.Data = rest[:binarySize:binarySize]
		*binaryData = rest[binarySize:]
	} else {
		t.Data, err = decodeJSONData(in.Data, dt, n, maxBytes)
		if err != nil {
			return tensor.Tensor{}, invalidArg("input '%s': %w", name, err)
		}
	}
	if err := t.Validate(); err != nil {
		return tensor.Tensor{}, invalidArg("input '%s': %w", name, err)
	}
	return t, nil
}

// inputContent checks that an input carries its data in exactly one way
// and returns its binary size when that way is binary.
func inputContent(in *inputJSON, name string) (size uint64, isBinary bool, err error) {
	rawSize, hasBinary := in.Parameters["binary_data_size"]
	hasShm := false
	for _, p := range sharedMemoryParams {
		if _, ok := in.Parameters[p]; ok {
			hasShm = true
		}
	}
	hasData := in.Data != nil
	var set []string
	if hasData {
		set = append(set, "'data'")
	}
	if hasBinary {
		set = append(set, "'binary_data_size'")
	}
	if hasShm {
		set = append(set, "'shared_memory_region'")
	}
	if len(set) != 1 {
		got := "no field is set"
		if len(set) > 1 {
			got = "set " + strings.Join(set, " ")
		}
		return 0, false, invalidArg("input '%s' must set only one of the following fields: 'data', "+
			"'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But %s", name, got)
	}
	if hasBinary {
		size, ok := jsonUint(rawSize)
		if !ok {
			return 0, false, invalidArg("input '%s': Unable to parse 'binary_data_size': expected a non-negative integer, got %s", name, rawSize)
		}
		return size, true, nil
	}
	return 0, false, nil
}

func decodeRequestedOutputs(outs []outputJSON, call *inferCall, sm *sharedMemory) error {
	if len(outs) == 0 {
		return nil
	}
	call.outputs = make(map[string]outputOptions, len(outs))
	call.req.Outputs = make([]infer.RequestedOutput, 0, len(outs))
	for i, o := range outs {
		if o.Name == nil {
			return invalidArg("output %d has no 'name'", i)
		}
		name := *o.Name
		if _, dup := call.outputs[name]; dup {
			return invalidArg("output '%s' is requested more than once", name)
		}
		opts := outputOptions{binary: call.defaultBinary}
		ref, inShm, err := tensorRef("output '"+name+"'", o.Parameters)
		if err != nil {
			return err
		}
		if inShm {
			bound, err := sm.output(call.req.Model, name, ref)
			if err != nil {
				return err
			}
			if call.shmOut == nil {
				call.shmOut = make(shm.Outputs, len(outs))
			}
			call.shmOut[name] = bound
		}
		var pass map[string]any
		for _, key := range sortedKeys(o.Parameters) {
			raw := o.Parameters[key]
			switch {
			case key == "binary_data":
				b, ok := jsonBool(raw)
				if !ok {
					return invalidArg("output '%s': Unable to parse 'binary_data': expected a boolean, got %s", name, raw)
				}
				opts.binary = b
			case key == "classification":
				// The service computes the classification; it is checked here
				// so that a bad value is named in the protocol's words.
				n, ok := jsonUint(raw)
				if !ok {
					return invalidArg("output '%s': Unable to set 'classification': expected a non-negative integer, got %s", name, raw)
				}
				if n > 0 {
					if pass == nil {
						pass = make(map[string]any)
					}
					pass[key] = int64(min(n, math.MaxInt64))
				}
			case slices.Contains(sharedMemoryParams, key):
				// Written by the front end; the model need not know.
			default:
				v, ok := scalarValue(raw)
				if !ok {
					return invalidArg("output '%s': parameter '%s' has invalid type. It should be either 'int', 'bool', or 'string'.", name, key)
				}
				if pass == nil {
					pass = make(map[string]any)
				}
				pass[key] = v
			}
		}
		call.outputs[name] = opts
		call.req.Outputs = append(call.req.Outputs, infer.RequestedOutput{Name: name, Parameters: pass})
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonError turns an encoding/json error into a client error that says
// where the JSON was wrong.
func jsonError(what string, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return invalidArg("malformed JSON in %s at byte offset %d: %v", what, syn.Offset, err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the body"
		} else {
			field = "'" + field + "'"
		}
		return invalidArg("invalid %s: %s must be %s, got %s (at byte offset %d)",
			what, field, jsonKind(typ.Type), typ.Value, typ.Offset)
	default:
		return invalidArg("unable to parse %s: %v", what, err)
	}
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			return "a JSON value"
		}
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.String()
}

// encodeInferResponse writes the JSON part of an inference response into
// dst and returns the binary output buffers to send after it, in order.
// Binary buffers alias the response's tensors.
func encodeInferResponse(dst []byte, resp *infer.Response, call *inferCall) ([]byte, [][]byte, error) {
	req := call.req
	id, model, version := resp.ID, resp.Model, resp.Version
	if id == "" {
		id = req.ID
	}
	if model == "" {
		model = req.Model
	}
	if version == "" {
		version = req.Version
	}
	dst = append(dst, '{')
	if id != "" {
		dst = append(dst, `"id":`...)
		dst = appendJSONString(dst, []byte(id))
		dst = append(dst, ',')
	}
	dst = append(dst, `"model_name":`...)
	dst = appendJSONString(dst, []byte(model))
	dst = append(dst, `,"model_version":`...)
	dst = appendJSONString(dst, []byte(version))
	if len(resp.Parameters) > 0 {
		dst = append(dst, `,"parameters":`...)
		var err error
		if dst, err = appendParameters(dst, resp.Parameters); err != nil {
			return dst, nil, err
		}
	}
	if len(call.shmOut) > 0 {
		names := make([]string, len(resp.Outputs))
		data := make([][]byte, len(resp.Outputs))
		for i := range resp.Outputs {
			names[i], data[i] = resp.Outputs[i].Name, resp.Outputs[i].Data
		}
		if err := call.shmOut.WriteAll(names, data); err != nil {
			return dst, nil, err
		}
	}
	dst = append(dst, `,"outputs":[`...)
	var binaries [][]byte
	for i := range resp.Outputs {
		out := resp.Outputs[i]
		opts := call.optionsFor(out.Name)
		if err := out.Validate(); err != nil {
			return dst, nil, infer.Errorf(infer.CodeInternal, "model '%s' produced a bad output: %w", model, err)
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendJSONString(dst, []byte(out.Name))
		dst = append(dst, `,"datatype":"`...)
		dst = append(dst, out.DataType...)
		dst = append(dst, `","shape":[`...)
		for j, d := range out.Shape {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, d, 10)
		}
		dst = append(dst, ']')
		if o, ok := call.shmOut[out.Name]; ok {
			// Written to the region: only say where.
			dst = append(dst, `,"parameters":{"shared_memory_region":`...)
			dst = appendJSONString(dst, []byte(o.Ref.Region))
			dst = append(dst, `,"shared_memory_byte_size":`...)
			dst = strconv.AppendUint(dst, o.Ref.ByteSize, 10)
			if o.Ref.Offset != 0 {
				dst = append(dst, `,"shared_memory_offset":`...)
				dst = strconv.AppendUint(dst, o.Ref.Offset, 10)
			}
			dst = append(dst, '}')
		} else if opts.binary {
			dst = append(dst, `,"parameters":{"binary_data_size":`...)
			dst = strconv.AppendInt(dst, int64(len(out.Data)), 10)
			dst = append(dst, '}')
			if len(out.Data) > 0 {
				binaries = append(binaries, out.Data)
			}
		} else {
			dst = append(dst, `,"data":`...)
			var err error
			if dst, err = appendJSONData(dst, &out); err != nil {
				return dst, nil, infer.Errorf(infer.CodeInternal, "model '%s': %w", model, err)
			}
		}
		dst = append(dst, '}')
	}
	dst = append(dst, "]}"...)
	return dst, binaries, nil
}

// appendParameters writes response parameters as a JSON object, keys sorted.
func appendParameters(dst []byte, params map[string]any) ([]byte, error) {
	dst = append(dst, '{')
	for i, k := range sortedKeys(params) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, []byte(k))
		dst = append(dst, ':')
		switch v := params[k].(type) {
		case bool:
			dst = strconv.AppendBool(dst, v)
		case string:
			dst = appendJSONString(dst, []byte(v))
		case int:
			dst = strconv.AppendInt(dst, int64(v), 10)
		case int32:
			dst = strconv.AppendInt(dst, int64(v), 10)
		case int64:
			dst = strconv.AppendInt(dst, v, 10)
		case uint32:
			dst = strconv.AppendUint(dst, uint64(v), 10)
		case uint64:
			dst = strconv.AppendUint(dst, v, 10)
		case float32:
			dst = appendDouble(dst, float64(v))
		case float64:
			dst = appendDouble(dst, v)
		default:
			return dst, infer.Errorf(infer.CodeInternal, "response parameter '%s' has unsupported type %T", k, v)
		}
	}
	return append(dst, '}'), nil
}

// errorBody is the JSON body of every error response.
func errorBody(msg string) []byte {
	// Messages may quote client input; keep the JSON valid UTF-8.
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	b := append([]byte(`{"error":`), appendJSONString(nil, []byte(msg))...)
	return append(b, '}')
}

// decodeRawInput builds the request of a raw binary body (one whose JSON
// header is empty): the whole body is the model's single input, its shape
// deduced from the configuration as Triton deduces it. Outputs default to
// binary.
func decodeRawInput(model, version string, cfg *pb.ModelConfig, body []byte) (*inferCall, error) {
	inputs := cfg.GetInput()
	if len(inputs) != 1 {
		return nil, invalidArg("Raw request must only have 1 input (found 1) to be deduced but got %d inputs in '%s' model configuration",
			len(inputs), model)
	}
	in := inputs[0]
	dt, ok := configDataType(in.GetDataType())
	if !ok {
		return nil, invalidArg("raw input '%s' has unsupported datatype %s", in.GetName(), in.GetDataType())
	}
	var shape []int64
	if cfg.GetMaxBatchSize() != 0 {
		shape = append(shape, 1)
	}
	dynamic := -1
	fixed := int64(1)
	for _, d := range in.GetDims() {
		if d == -1 {
			if dynamic != -1 {
				return nil, invalidArg("The shape of the raw input '%s' can not be deduced because there are more than one variable-sized dimension", in.GetName())
			}
			dynamic = len(shape)
		} else {
			if d < 0 || (d != 0 && fixed > math.MaxInt64/d) {
				return nil, invalidArg("raw input '%s' has invalid dims %v in the model configuration", in.GetName(), in.GetDims())
			}
			fixed *= d
		}
		shape = append(shape, d)
	}
	data := body
	switch {
	case dt == tensor.Bytes:
		if dynamic != -1 || fixed != 1 {
			return nil, invalidArg("For BYTE datatype raw input '%s', the model must have input shape [1]", in.GetName())
		}
		if uint64(len(body)) > math.MaxUint32 {
			return nil, invalidArg("raw input '%s' is larger than a BYTES element can be", in.GetName())
		}
		data = tensor.EncodeBytes([][]byte{body})
	case dynamic != -1:
		if fixed == 0 {
			return nil, invalidArg("The shape of the raw input '%s' can not be deduced: its other dimensions hold no elements", in.GetName())
		}
		shape[dynamic] = int64(len(body)) / fixed / int64(dt.ElementSize())
	}
	t := tensor.Tensor{Name: in.GetName(), DataType: dt, Shape: shape, Data: data}
	if err := t.Validate(); err != nil {
		return nil, invalidArg("raw input '%s': %w", in.GetName(), err)
	}
	req := &infer.Request{Model: model, Version: version, Inputs: []tensor.Tensor{t}}
	return &inferCall{req: req, defaultBinary: true}, nil
}

// configDataType maps a config.pbtxt data type to its KServe name.
func configDataType(d pb.DataType) (tensor.DataType, bool) {
	if d == pb.DataType_TYPE_STRING {
		return tensor.Bytes, true
	}
	name, ok := strings.CutPrefix(d.String(), "TYPE_")
	if !ok {
		return "", false
	}
	dt, err := tensor.ParseDataType(name)
	return dt, err == nil
}
