package registration

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	pb "github.com/helixflow/helixflow/proto/inference"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/workers/httpapi"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// describer answers as workers/models does for a loaded model: metadata
// shapes with the batch dimension (-1) first when the model batches.
type describer struct {
	cfg *pb.ModelConfig
	err error
}

func (d describer) ModelMetadata(_ context.Context, name, version string) (*infer.ModelMetadata, error) {
	if d.err != nil {
		return nil, d.err
	}
	md := &infer.ModelMetadata{Name: name, Versions: []string{"1"}, Platform: d.cfg.GetPlatform()}
	for _, in := range d.cfg.GetInput() {
		md.Inputs = append(md.Inputs, infer.TensorMetadata{Name: in.GetName(), DataType: tensor.Int32, Shape: append([]int64{-1}, in.GetDims()...)})
	}
	for _, out := range d.cfg.GetOutput() {
		md.Outputs = append(md.Outputs, infer.TensorMetadata{Name: out.GetName(), DataType: tensor.Int32, Shape: append([]int64{-1}, out.GetDims()...)})
	}
	return md, nil
}

func (d describer) ModelConfig(context.Context, string, string) (*pb.ModelConfig, error) {
	return d.cfg, d.err
}

// The sample model's config.pbtxt, as the worker loads it.
func sampleConfig(t *testing.T) *pb.ModelConfig {
	t.Helper()
	b, err := os.ReadFile("../../models/simple/config.pbtxt")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &pb.ModelConfig{}
	if err := prototext.Unmarshal(b, cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestInfoFrom(t *testing.T) {
	cfg := sampleConfig(t)
	info, err := InfoFrom(describer{cfg: cfg})(t.Context(), "simple")
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, err := httpapi.ConfigJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := &registryv1.ModelInfo{
		Platform: "onnxruntime_onnx", MaxBatchSize: 8,
		Inputs: []*registryv1.TensorInfo{
			{Name: "INPUT0", Datatype: "INT32", Shape: []int64{16}}, {Name: "INPUT1", Datatype: "INT32", Shape: []int64{16}},
		},
		Outputs: []*registryv1.TensorInfo{
			{Name: "OUTPUT0", Datatype: "INT32", Shape: []int64{16}}, {Name: "OUTPUT1", Datatype: "INT32", Shape: []int64{16}},
		},
		ConfigJson: string(wantJSON), // what GET /v2/models/simple/config answers
	}
	if !proto.Equal(info, want) {
		t.Fatalf("info:\n%v\nwant:\n%v", info, want)
	}

	// Not batching: the shapes are the metadata's; no platform: the backend.
	cfg.MaxBatchSize, cfg.Platform = 0, ""
	info, err = InfoFrom(describer{cfg: cfg})(t.Context(), "simple")
	if err != nil {
		t.Fatal(err)
	}
	if info.GetPlatform() != "onnxruntime" || len(info.GetInputs()[0].GetShape()) != 2 {
		t.Fatalf("unbatched: %v", info)
	}

	// A config over 64 KiB is sent empty.
	cfg.Parameters = map[string]*pb.ModelParameter{"big": {StringValue: strings.Repeat("x", MaxConfigJSONBytes)}}
	info, err = InfoFrom(describer{cfg: cfg})(t.Context(), "simple")
	if err != nil || info.GetConfigJson() != "" || len(info.GetInputs()) != 2 {
		t.Fatalf("big config: %v, %v", info, err)
	}

	// A stateful model says so: the gateway keeps its sequences on one
	// worker. simple has no sequence_batching (want above has none).
	seq := &pb.ModelConfig{}
	b, err := os.ReadFile("../../models/simple_sequence/config.pbtxt")
	if err != nil {
		t.Fatal(err)
	}
	if err := prototext.Unmarshal(b, seq); err != nil {
		t.Fatal(err)
	}
	info, err = InfoFrom(describer{cfg: seq})(t.Context(), "simple_sequence")
	if err != nil || !info.GetSequenceBatching() {
		t.Fatalf("simple_sequence: %v, %v", info, err)
	}

	gone := errors.New("requested model 'simple' is not available")
	if _, err := InfoFrom(describer{err: gone})(t.Context(), "simple"); !errors.Is(err, gone) {
		t.Fatalf("error %v does not wrap the service's", err)
	}
}

func TestBoundInfos(t *testing.T) {
	info := func() *registryv1.ModelInfo {
		return &registryv1.ModelInfo{Platform: "p", Inputs: []*registryv1.TensorInfo{{Name: "x", Datatype: "FP32"}},
			ConfigJson: `{"a":"` + strings.Repeat("x", 1000) + `"}`}
	}
	mk := func() []Model {
		return []Model{{Name: "a", Info: info()}, {Name: "b"}, {Name: "c", Info: info()}}
	}
	one := proto.Size(info())
	slim := proto.Size(&registryv1.ModelInfo{Platform: "p", Inputs: info().Inputs})

	ms := mk()
	if boundInfos(ms, 2*one) || ms[2].Info.GetConfigJson() == "" {
		t.Fatal("within the bound, something was left out")
	}
	// One config too many: the last model's goes.
	ms = mk()
	shared := ms[2].Info
	if !boundInfos(ms, one+slim) || ms[0].Info.GetConfigJson() == "" || ms[2].Info.GetConfigJson() != "" || ms[2].Info.GetPlatform() != "p" {
		t.Fatalf("configs: %v / %v", ms[0].Info, ms[2].Info)
	}
	if shared.GetConfigJson() == "" {
		t.Fatal("boundInfos modified an info (the cache's)")
	}
	// Room for one slim info only.
	ms = mk()
	if !boundInfos(ms, slim) || ms[0].Info == nil || ms[0].Info.GetConfigJson() != "" || ms[2].Info != nil {
		t.Fatalf("infos: %v / %v", ms[0].Info, ms[2].Info)
	}

	// A sequence model never loses its flag: without room it keeps a stub
	// (platform, max_batch_size, sequence_batching) instead of nothing.
	ms = mk()
	ms[2].Info = info()
	ms[2].Info.SequenceBatching = true
	if !boundInfos(ms, 0) || ms[0].Info != nil || !ms[2].Info.GetSequenceBatching() || ms[2].Info.GetPlatform() != "p" || len(ms[2].Info.GetInputs()) != 0 {
		t.Fatalf("sequence model under a tight bound: %v / %v", ms[0].Info, ms[2].Info)
	}
	if !proto.Equal(ms[2].Info, &registryv1.ModelInfo{Platform: "p", SequenceBatching: true}) {
		t.Fatalf("stub %v", ms[2].Info)
	}
}
