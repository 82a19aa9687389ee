package grpcapi

import (
	"fmt"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/shm"
)

// encodeInferResponse builds the wire response. Like Triton, every output's
// data goes in raw_output_contents (aliasing the tensors' bytes), and
// outputs[] carries only name, datatype and shape.
func encodeInferResponse(req *infer.Request, resp *infer.Response) (*pb.ModelInferResponse, error) {
	return encodeResponse(req, resp, nil)
}

// encodeResponse is encodeInferResponse that first writes the outputs bound
// in shmOut into their regions (all or none: a window too small fails the
// request before anything is written). Those outputs carry their
// shared-memory parameters and an empty raw_output_contents entry, which
// keeps the entries lined up with outputs[].
func encodeResponse(req *infer.Request, resp *infer.Response, shmOut shm.Outputs) (*pb.ModelInferResponse, error) {
	if len(shmOut) > 0 {
		names := make([]string, len(resp.Outputs))
		data := make([][]byte, len(resp.Outputs))
		for i := range resp.Outputs {
			names[i], data[i] = resp.Outputs[i].Name, resp.Outputs[i].Data
		}
		if err := shmOut.WriteAll(names, data); err != nil {
			return nil, err
		}
	}
	out := &pb.ModelInferResponse{
		ModelName:    resp.Model,
		ModelVersion: resp.Version,
		Id:           resp.ID,
	}
	if out.ModelName == "" {
		out.ModelName = req.Model
	}
	if out.Id == "" {
		out.Id = req.ID
	}
	if len(resp.Parameters) > 0 {
		out.Parameters = make(map[string]*pb.InferParameter, len(resp.Parameters))
		for k, v := range resp.Parameters {
			p, err := inferParameter(v)
			if err != nil {
				return nil, fmt.Errorf("response parameter %q: %w", k, err)
			}
			out.Parameters[k] = p
		}
	}
	// One backing array for all output messages saves an allocation per
	// output on the hot path.
	tensors := make([]pb.ModelInferResponse_InferOutputTensor, len(resp.Outputs))
	out.Outputs = make([]*pb.ModelInferResponse_InferOutputTensor, len(resp.Outputs))
	out.RawOutputContents = make([][]byte, len(resp.Outputs))
	for i, t := range resp.Outputs {
		tensors[i].Name = t.Name
		tensors[i].Datatype = string(t.DataType)
		tensors[i].Shape = t.Shape
		out.Outputs[i] = &tensors[i]
		if o, ok := shmOut[t.Name]; ok {
			tensors[i].Parameters = shmParameters(o.Ref)
			continue
		}
		out.RawOutputContents[i] = t.Data
	}
	return out, nil
}

// shmParameters tells the client where an output was written.
func shmParameters(ref shm.Ref) map[string]*pb.InferParameter {
	p := map[string]*pb.InferParameter{
		shm.ParamRegion:   {ParameterChoice: &pb.InferParameter_StringParam{StringParam: ref.Region}},
		shm.ParamByteSize: {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: int64(ref.ByteSize)}},
	}
	if ref.Offset != 0 {
		p[shm.ParamOffset] = &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: int64(ref.Offset)}}
	}
	return p
}

// inferParameter converts a Go parameter value from the service.
func inferParameter(v any) (*pb.InferParameter, error) {
	switch x := v.(type) {
	case bool:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: x}}, nil
	case int:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: int64(x)}}, nil
	case int32:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: int64(x)}}, nil
	case int64:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: x}}, nil
	case uint32:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: uint64(x)}}, nil
	case uint64:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_Uint64Param{Uint64Param: x}}, nil
	case float32:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_DoubleParam{DoubleParam: float64(x)}}, nil
	case float64:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_DoubleParam{DoubleParam: x}}, nil
	case string:
		return &pb.InferParameter{ParameterChoice: &pb.InferParameter_StringParam{StringParam: x}}, nil
	}
	return nil, fmt.Errorf("unsupported parameter type %T", v)
}
