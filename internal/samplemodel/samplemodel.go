// Package samplemodel is the request (as protobuf and as JSON) that e2e
// and the resilience suite send to the sample model repository's `simple`
// model (models/, written by scripts/make_models.py): two INT32 [1,16]
// inputs, and OUTPUT0 is their sum, OUTPUT1 their difference.
package samplemodel

import (
	"encoding/binary"

	"github.com/helixflow/helixflow/proto/inference"
)

// Name is the sample model's name.
const Name = "simple"

// InferRequest is a ModelInfer on Name, as tritonclient's example sends
// it: INPUT0 = 0..15, INPUT1 = 1s, raw contents.
func InferRequest() *inference.ModelInferRequest {
	in0, in1 := make([]byte, 64), make([]byte, 64)
	for i := range 16 {
		binary.LittleEndian.PutUint32(in0[4*i:], uint32(i))
		binary.LittleEndian.PutUint32(in1[4*i:], 1)
	}
	return &inference.ModelInferRequest{
		ModelName: Name,
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, 16}},
			{Name: "INPUT1", Datatype: "INT32", Shape: []int64{1, 16}},
		},
		RawInputContents: [][]byte{in0, in1},
	}
}

// RESTBody is InferRequest as KServe v2 JSON, for POST
// /v2/models/simple/infer.
func RESTBody() []byte {
	return []byte(`{"inputs":[` +
		`{"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},` +
		`{"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}`)
}
