package repository

import (
	"reflect"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

func TestDeclaredIOAndTorchInstanceKinds(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		inputs  []backend.IO
		wantErr string
	}{
		{"batched, dims and reshape", `name: "m" platform: "pytorch_libtorch" max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP16 dims: [ 4 ] }, { name: "r" data_type: TYPE_INT64 dims: [ 6 ] reshape: { shape: [ 2, 3 ] } } ]
output [ { name: "y" data_type: TYPE_FP16 dims: [ 4 ] } ]`,
			[]backend.IO{{Name: "x", DataType: tensor.FP16, Shape: []int64{-1, 4}}, {Name: "r", DataType: tensor.Int64, Shape: []int64{-1, 2, 3}}}, ""},
		{"not batched, KIND_GPU", `name: "m" platform: "pytorch_libtorch"
input [ { name: "x" data_type: TYPE_BOOL dims: [ -1 ] } ] output [ { name: "y" data_type: TYPE_BOOL dims: [ -1 ] } ]
instance_group [ { kind: KIND_GPU gpus: [ 0 ] } ]`,
			[]backend.IO{{Name: "x", DataType: tensor.Bool, Shape: []int64{-1}}}, ""},
		{"KIND_GPU on onnxruntime is still refused", `name: "m" platform: "onnxruntime_onnx"
input [ { name: "x" data_type: TYPE_BOOL dims: [ -1 ] } ] output [ { name: "y" data_type: TYPE_BOOL dims: [ -1 ] } ]
instance_group [ { kind: KIND_GPU } ]`,
			[]backend.IO{{Name: "x", DataType: tensor.Bool, Shape: []int64{-1}}}, "instance_group[0].kind KIND_GPU is not supported by the onnxruntime backend"},
		{"gpus on a KIND_CPU group", `name: "m" platform: "pytorch_libtorch"
input [ { name: "x" data_type: TYPE_BOOL dims: [ -1 ] } ] output [ { name: "y" data_type: TYPE_BOOL dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU gpus: [ 0 ] } ]`,
			[]backend.IO{{Name: "x", DataType: tensor.Bool, Shape: []int64{-1}}}, "instance_group[0].gpus is set but the kind is KIND_CPU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			if err := Normalize(cfg, "m"); err != nil {
				t.Fatal(err)
			}
			inputs, outputs := DeclaredIO(cfg)
			if !reflect.DeepEqual(inputs, tt.inputs) {
				t.Errorf("DeclaredIO inputs = %+v, want %+v", inputs, tt.inputs)
			}
			AutoComplete(cfg, inputs, outputs)
			err = Validate(cfg, inputs, outputs)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate: %v, want %q", err, tt.wantErr)
			}
		})
	}
}
