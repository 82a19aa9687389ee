package grpcapi

import (
	"encoding/binary"
	"math"
	"strings"
	"time"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/shm"
	"github.com/helixflow/helixflow/workers/tensor"
)

const paramClassification = "classification"

// allowedTritonParams are the "triton_"-prefixed request parameters Triton
// accepts; every other key with that prefix is reserved.
var allowedTritonParams = map[string]bool{"triton_enable_empty_final_response": true}

// decodeInferRequest checks a ModelInferRequest and converts it into an
// infer.Request. Raw contents and shapes alias the message, which the caller
// owns and does not reuse. Tensors in shared memory are refused: paths that
// serve shared memory call decodeRequest.
func decodeInferRequest(req *pb.ModelInferRequest) (*infer.Request, error) {
	out, _, err := decodeRequest(req, nil)
	return out, err
}

// decodeRequest is decodeInferRequest with shared memory served by sm
// (nil: refused). Inputs in shared memory are copied out of their regions;
// outputs asked for in shared memory come back bound in shmOut, which the
// caller releases after writing them (shmOut.Release is safe on nil).
func decodeRequest(req *pb.ModelInferRequest, sm *sharedMemory) (_ *infer.Request, shmOut shm.Outputs, _ error) {
	model := req.GetModelName()
	out := &infer.Request{
		Model:   model,
		Version: req.GetModelVersion(),
		ID:      req.GetId(),
	}
	if err := decodeRequestParameters(out, req.GetParameters()); err != nil {
		return nil, nil, err
	}
	inputs, err := decodeInputs(req, sm)
	if err != nil {
		return nil, nil, err
	}
	out.Inputs = inputs
	outputs, shmOut, err := decodeRequestedOutputs(model, req.GetOutputs(), sm)
	if err != nil {
		return nil, nil, err
	}
	out.Outputs = outputs
	return out, shmOut, nil
}

// decodeRequestParameters moves "priority" and "timeout" into their fields
// and keeps the rest as Go values, checking types as Triton does.
func decodeRequestParameters(out *infer.Request, params map[string]*pb.InferParameter) error {
	for key, p := range params {
		switch {
		case key == "priority":
			switch v := p.GetParameterChoice().(type) {
			case *pb.InferParameter_Int64Param:
				if v.Int64Param < 0 {
					return invalidf("invalid value for 'priority', expected value >= 0.")
				}
				out.Priority = uint64(v.Int64Param)
			case *pb.InferParameter_Uint64Param:
				out.Priority = v.Uint64Param
			default:
				return invalidf("invalid value type for 'priority' parameter, expected int64_param or uint64_param.")
			}
		case key == "timeout":
			v, ok := p.GetParameterChoice().(*pb.InferParameter_Int64Param)
			if !ok {
				return invalidf("invalid value type for 'timeout' parameter, expected int64_param.")
			}
			if v.Int64Param < 0 {
				return invalidf("invalid value for 'timeout', expected value >= 0.")
			}
			// Microseconds on the wire; cap so the Duration cannot overflow.
			us := min(v.Int64Param, math.MaxInt64/int64(time.Microsecond))
			out.Timeout = time.Duration(us) * time.Microsecond
		case key == "sequence_id":
			switch p.GetParameterChoice().(type) {
			case *pb.InferParameter_Int64Param, *pb.InferParameter_StringParam:
			default:
				return invalidf("invalid value type for 'sequence_id' parameter, expected int64_param or string_param.")
			}
			if err := setParameter(out, key, p); err != nil {
				return err
			}
		case key == "sequence_start" || key == "sequence_end":
			if _, ok := p.GetParameterChoice().(*pb.InferParameter_BoolParam); !ok {
				return invalidf("invalid value type for '%s' parameter, expected bool_param.", key)
			}
			if err := setParameter(out, key, p); err != nil {
				return err
			}
		case strings.HasPrefix(key, "triton_") && !allowedTritonParams[key]:
			return invalidf("parameter keys starting with 'triton_' are reserved for Triton usage. Only the following keys starting with 'triton_' are allowed: triton_enable_empty_final_response")
		default:
			if err := setParameter(out, key, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func setParameter(out *infer.Request, key string, p *pb.InferParameter) error {
	v, err := parameterValue(key, p)
	if err != nil {
		return err
	}
	if out.Parameters == nil {
		out.Parameters = make(map[string]any)
	}
	out.Parameters[key] = v
	return nil
}

// parameterValue converts a request parameter into the Go values
// infer.Request documents: bool, int64, string or float64.
func parameterValue(key string, p *pb.InferParameter) (any, error) {
	switch v := p.GetParameterChoice().(type) {
	case *pb.InferParameter_BoolParam:
		return v.BoolParam, nil
	case *pb.InferParameter_Int64Param:
		return v.Int64Param, nil
	case *pb.InferParameter_StringParam:
		return v.StringParam, nil
	case *pb.InferParameter_DoubleParam:
		return v.DoubleParam, nil
	}
	return nil, invalidf("invalid value type for '%s' parameter, expected int64_param, bool_param, string_param or double_param.", key)
}

// decodeInputs decodes the inputs. raw_input_contents holds one entry per
// input that is not in shared memory, in order (tritonclient sends none for
// shared-memory inputs).
func decodeInputs(req *pb.ModelInferRequest, sm *sharedMemory) ([]tensor.Tensor, error) {
	model := req.GetModelName()
	inputs := req.GetInputs()
	raw := req.GetRawInputContents()
	if len(raw) > len(inputs) {
		return nil, invalidf("request for model '%s' has %d raw_input_contents entries but only %d inputs; send exactly one entry per input, in order",
			model, len(raw), len(inputs))
	}
	out := make([]tensor.Tensor, len(inputs))
	rawIndex := 0
	var names nameSet
	for i, in := range inputs {
		name := in.GetName()
		if name == "" {
			return nil, invalidf("input %d for model '%s' has no name", i, model)
		}
		if !names.add(name) {
			return nil, invalidf("input '%s' for model '%s' is given more than once", name, model)
		}
		if in.GetDatatype() == "" {
			return nil, invalidf("input '%s' for model '%s' has no datatype", name, model)
		}
		dt, err := tensor.ParseDataType(in.GetDatatype())
		if err != nil {
			return nil, invalidf("input '%s' for model '%s' has unknown datatype '%s'", name, model, in.GetDatatype())
		}
		shape := in.GetShape()
		if len(shape) == 0 {
			return nil, invalidf("input '%s' for model '%s' has no shape", name, model)
		}
		ref, inShm, err := tensorRef("input '"+name+"' for model '"+model+"'", in.GetParameters())
		if err != nil {
			return nil, err
		}

		var data []byte
		switch {
		case inShm && in.GetContents() != nil:
			return nil, invalidf("input '%s' for model '%s' has both contents and a shared memory region; send one", name, model)
		case inShm:
			if data, err = sm.input(model, name, ref); err != nil {
				return nil, err
			}
		case len(raw) > 0 && in.GetContents() != nil:
			return nil, invalidf("contents field must not be specified when using raw_input_contents for '%s' for model '%s'", name, model)
		case len(raw) > 0:
			if rawIndex >= len(raw) {
				return nil, invalidf("unable to find data for input tensor '%s' for model '%s' in request.", name, model)
			}
			data = raw[rawIndex]
			rawIndex++
		case in.GetContents() != nil:
			data, err = typedContents(model, name, dt, in.GetContents())
			if err != nil {
				return nil, err
			}
		default:
			return nil, invalidf("unable to find data for input tensor '%s' for model '%s' in request.", name, model)
		}

		t := tensor.Tensor{Name: name, DataType: dt, Shape: shape, Data: data}
		if err := checkSize(model, &t); err != nil {
			return nil, err
		}
		out[i] = t
	}
	if rawIndex < len(raw) {
		return nil, invalidf("request for model '%s' has %d raw_input_contents entries but %d inputs not in shared memory; send exactly one entry per such input, in order",
			model, len(raw), rawIndex)
	}
	return out, nil
}

// nameSet finds duplicate tensor names. Requests usually name a few
// tensors, so it scans a slice, switching to a map past smallNameSet names
// so that a request naming many tensors cannot make the check quadratic.
type nameSet struct {
	small [smallNameSet]string // kept on the stack: no allocation per request
	n     int
	large map[string]struct{}
}

const smallNameSet = 16

// add records name and reports whether it was new.
func (s *nameSet) add(name string) bool {
	if s.large != nil {
		if _, ok := s.large[name]; ok {
			return false
		}
		s.large[name] = struct{}{}
		return true
	}
	for _, n := range s.small[:s.n] {
		if n == name {
			return false
		}
	}
	if s.n < smallNameSet {
		s.small[s.n] = name
		s.n++
		return true
	}
	s.large = make(map[string]struct{}, 2*smallNameSet)
	for _, n := range s.small {
		s.large[n] = struct{}{}
	}
	s.large[name] = struct{}{}
	return true
}

// checkSize checks that t's data fits its shape, with Triton's wording.
func checkSize(model string, t *tensor.Tensor) error {
	n, err := tensor.ElementCount(t.Shape)
	if err != nil {
		return invalidf("input '%s' for model '%s' has invalid shape %v: %v", t.Name, model, t.Shape, err)
	}
	if t.DataType != tensor.Bytes {
		want, err := tensor.ByteSize(t.DataType, t.Shape)
		if err != nil {
			return invalidf("input '%s' for model '%s' has invalid shape %v: %v", t.Name, model, t.Shape, err)
		}
		if int64(len(t.Data)) != want {
			return invalidf("input byte size mismatch for input '%s' for model '%s'. Expected %d, got %d", t.Name, model, want, len(t.Data))
		}
		return nil
	}
	_, err = tensor.CountBytesElements(t.Data, n)
	if err == nil {
		return nil
	}
	// Only on failure: say how many whole elements the data holds when it
	// parses, else what is malformed.
	if got, ok := countWholeBytesElements(t.Data); ok {
		return invalidf("expected %d string elements for inference input '%s' for model '%s', got %d", n, t.Name, model, got)
	}
	return invalidf("input '%s' for model '%s' has malformed BYTES data: %v", t.Name, model, err)
}

// countWholeBytesElements counts serialized BYTES elements; ok is false when
// the data does not end on an element boundary.
func countWholeBytesElements(data []byte) (n int64, ok bool) {
	for len(data) > 0 {
		if len(data) < 4 {
			return n, false
		}
		l := binary.LittleEndian.Uint32(data)
		if uint64(l) > uint64(len(data)-4) {
			return n, false
		}
		data = data[4+int(l):]
		n++
	}
	return n, true
}

// contentField names each typed contents field by the datatype it carries
// natively, for Triton's "unexpected explicit tensor data" message.
type contentField struct {
	dt  tensor.DataType
	len func(*pb.InferTensorContents) int
}

var contentFields = []contentField{
	{tensor.Bool, func(c *pb.InferTensorContents) int { return len(c.GetBoolContents()) }},
	{tensor.Int32, func(c *pb.InferTensorContents) int { return len(c.GetIntContents()) }},
	{tensor.Int64, func(c *pb.InferTensorContents) int { return len(c.GetInt64Contents()) }},
	{tensor.Uint32, func(c *pb.InferTensorContents) int { return len(c.GetUintContents()) }},
	{tensor.Uint64, func(c *pb.InferTensorContents) int { return len(c.GetUint64Contents()) }},
	{tensor.FP32, func(c *pb.InferTensorContents) int { return len(c.GetFp32Contents()) }},
	{tensor.FP64, func(c *pb.InferTensorContents) int { return len(c.GetFp64Contents()) }},
	{tensor.Bytes, func(c *pb.InferTensorContents) int { return len(c.GetBytesContents()) }},
}

// wireType is the contents field type that carries dt: narrow integers
// travel widened to 32 bits.
func wireType(dt tensor.DataType) tensor.DataType {
	switch dt {
	case tensor.Int8, tensor.Int16:
		return tensor.Int32
	case tensor.Uint8, tensor.Uint16:
		return tensor.Uint32
	}
	return dt
}

// typedContents converts InferTensorContents into the tensor's raw
// little-endian layout.
func typedContents(model, name string, dt tensor.DataType, c *pb.InferTensorContents) ([]byte, error) {
	if dt == tensor.FP16 || dt == tensor.BF16 {
		return nil, invalidf("input '%s' for model '%s' of type '%s' has no typed contents field; send it in raw_input_contents", name, model, dt)
	}
	want := wireType(dt)
	for _, f := range contentFields {
		if f.dt != want && f.len(c) != 0 {
			return nil, invalidf("unexpected explicit tensor data for input tensor '%s' for model '%s' of type '%s', expected datatype '%s'", name, model, f.dt, dt)
		}
	}
	switch dt {
	case tensor.Bool:
		v := c.GetBoolContents()
		b := make([]byte, len(v))
		for i, x := range v {
			if x {
				b[i] = 1
			}
		}
		return b, nil
	case tensor.Int8:
		return narrowInts(model, name, dt, c.GetIntContents(), math.MinInt8, math.MaxInt8)
	case tensor.Int16:
		return narrowInts(model, name, dt, c.GetIntContents(), math.MinInt16, math.MaxInt16)
	case tensor.Int32:
		return appendLE(c.GetIntContents(), 4, func(b []byte, x int32) []byte { return binary.LittleEndian.AppendUint32(b, uint32(x)) }), nil
	case tensor.Int64:
		return appendLE(c.GetInt64Contents(), 8, func(b []byte, x int64) []byte { return binary.LittleEndian.AppendUint64(b, uint64(x)) }), nil
	case tensor.Uint8:
		return narrowUints(model, name, dt, c.GetUintContents(), math.MaxUint8)
	case tensor.Uint16:
		return narrowUints(model, name, dt, c.GetUintContents(), math.MaxUint16)
	case tensor.Uint32:
		return appendLE(c.GetUintContents(), 4, binary.LittleEndian.AppendUint32), nil
	case tensor.Uint64:
		return appendLE(c.GetUint64Contents(), 8, binary.LittleEndian.AppendUint64), nil
	case tensor.FP32:
		return appendLE(c.GetFp32Contents(), 4, func(b []byte, x float32) []byte { return binary.LittleEndian.AppendUint32(b, math.Float32bits(x)) }), nil
	case tensor.FP64:
		return appendLE(c.GetFp64Contents(), 8, func(b []byte, x float64) []byte { return binary.LittleEndian.AppendUint64(b, math.Float64bits(x)) }), nil
	case tensor.Bytes:
		return tensor.EncodeBytes(c.GetBytesContents()), nil
	}
	return nil, invalidf("input '%s' for model '%s' has unsupported datatype '%s'", name, model, dt)
}

func appendLE[T any](v []T, size int, put func([]byte, T) []byte) []byte {
	b := make([]byte, 0, size*len(v))
	for _, x := range v {
		b = put(b, x)
	}
	return b
}

// narrowInts packs int_contents into 1- or 2-byte elements, refusing values
// that do not fit rather than truncating them.
func narrowInts(model, name string, dt tensor.DataType, v []int32, lo, hi int32) ([]byte, error) {
	size := dt.ElementSize()
	b := make([]byte, 0, size*len(v))
	for i, x := range v {
		if x < lo || x > hi {
			return nil, invalidf("input '%s' for model '%s': int_contents[%d] = %d is out of range for %s", name, model, i, x, dt)
		}
		b = appendNarrow(b, uint32(x), size)
	}
	return b, nil
}

func narrowUints(model, name string, dt tensor.DataType, v []uint32, hi uint32) ([]byte, error) {
	size := dt.ElementSize()
	b := make([]byte, 0, size*len(v))
	for i, x := range v {
		if x > hi {
			return nil, invalidf("input '%s' for model '%s': uint_contents[%d] = %d is out of range for %s", name, model, i, x, dt)
		}
		b = appendNarrow(b, x, size)
	}
	return b, nil
}

func appendNarrow(b []byte, x uint32, size int) []byte {
	if size == 1 {
		return append(b, byte(x))
	}
	return binary.LittleEndian.AppendUint16(b, uint16(x))
}

// decodeRequestedOutputs decodes the requested outputs, binding those asked
// for in shared memory (released again when it fails).
func decodeRequestedOutputs(model string, outs []*pb.ModelInferRequest_InferRequestedOutputTensor, sm *sharedMemory) (_ []infer.RequestedOutput, shmOut shm.Outputs, err error) {
	if len(outs) == 0 {
		return nil, nil, nil
	}
	defer func() {
		if err != nil {
			shmOut.Release()
		}
	}()
	res := make([]infer.RequestedOutput, len(outs))
	var names nameSet
	for i, o := range outs {
		name := o.GetName()
		if name == "" {
			return nil, shmOut, invalidf("requested output %d for model '%s' has no name", i, model)
		}
		if !names.add(name) {
			return nil, shmOut, invalidf("output '%s' for model '%s' is requested more than once", name, model)
		}
		res[i].Name = name
		ref, inShm, err := tensorRef("output '"+name+"' for model '"+model+"'", o.GetParameters())
		if err != nil {
			return nil, shmOut, err
		}
		if inShm {
			bound, err := sm.output(model, name, ref)
			if err != nil {
				return nil, shmOut, err
			}
			if shmOut == nil {
				shmOut = make(shm.Outputs, len(outs))
			}
			shmOut[name] = bound
		}
		for key, p := range o.GetParameters() {
			if shm.IsParam(key) {
				continue // the front end writes the output; the model need not know
			}
			if key == paramClassification {
				if err := checkClassification(p); err != nil {
					return nil, shmOut, err
				}
			}
			v, err := parameterValue(key, p)
			if err != nil {
				return nil, shmOut, invalidf("output '%s' for model '%s': %w", name, model, err)
			}
			if res[i].Parameters == nil {
				res[i].Parameters = make(map[string]any, len(o.GetParameters()))
			}
			res[i].Parameters[key] = v
		}
	}
	return res, shmOut, nil
}

// checkClassification validates the parameter as Triton does; the service
// computes the top-k classes, since it knows the model's labels.
func checkClassification(p *pb.InferParameter) error {
	v, ok := p.GetParameterChoice().(*pb.InferParameter_Int64Param)
	if !ok {
		return invalidf("invalid value type for 'classification' parameter, expected int64_param")
	}
	if v.Int64Param <= 0 {
		return invalidf("invalid value for 'classification' parameter, expected > 0")
	}
	return nil
}
