package samplemodel

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"testing"
)

// The request is one a worker accepts: each raw input holds exactly its
// shape's INT32s, with the values the doc promises.
func TestInferRequest(t *testing.T) {
	r := InferRequest()
	if r.ModelName != Name || len(r.Inputs) != 2 || len(r.RawInputContents) != 2 {
		t.Fatalf("request: %v", r)
	}
	for i, in := range r.Inputs {
		n := int64(1)
		for _, d := range in.Shape {
			n *= d
		}
		if in.Datatype != "INT32" || int64(len(r.RawInputContents[i])) != 4*n {
			t.Fatalf("%s: %s, %d bytes for shape %v", in.Name, in.Datatype, len(r.RawInputContents[i]), in.Shape)
		}
	}
	for i := range 16 {
		in0 := binary.LittleEndian.Uint32(r.RawInputContents[0][4*i:])
		in1 := binary.LittleEndian.Uint32(r.RawInputContents[1][4*i:])
		if in0 != uint32(i) || in1 != 1 {
			t.Fatalf("element %d: %d, %d", i, in0, in1)
		}
	}
}

// The JSON body carries the same inputs as InferRequest.
func TestRESTBody(t *testing.T) {
	var body struct {
		Inputs []struct {
			Name     string  `json:"name"`
			Shape    []int64 `json:"shape"`
			Datatype string  `json:"datatype"`
			Data     []int32 `json:"data"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(RESTBody(), &body); err != nil {
		t.Fatal(err)
	}
	r := InferRequest()
	if len(body.Inputs) != len(r.Inputs) {
		t.Fatalf("%d inputs, want %d", len(body.Inputs), len(r.Inputs))
	}
	for i, in := range body.Inputs {
		want := r.Inputs[i]
		if in.Name != want.Name || in.Datatype != want.Datatype || !slices.Equal(in.Shape, want.Shape) {
			t.Fatalf("input %d: %+v, want %v", i, in, want)
		}
		for j, v := range in.Data {
			if got := int32(binary.LittleEndian.Uint32(r.RawInputContents[i][4*j:])); got != v {
				t.Fatalf("%s[%d] = %d, raw contents say %d", in.Name, j, v, got)
			}
		}
	}
}
