package noop

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/repository"
)

// repo writes a model repository with one model per config.
func repo(t *testing.T, configs map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, cfg := range configs {
		if err := os.MkdirAll(filepath.Join(root, name, "1"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name, repository.ConfigFile), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const varConfig = `
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 2, -1 ] } ]
output [
  { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] },
  { name: "VALUES" data_type: TYPE_FP16 dims: [ 2, -1, 3 ] }
]`

func TestSimpleFromTheRepository(t *testing.T) {
	// The sample repository's `simple`, as make bench-worker serves it.
	s, err := Load(filepath.Join("..", "..", "..", "models"), []string{"simple"}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want, err := repository.ReadConfig(filepath.Join("..", "..", "..", "models", "simple"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.ModelConfig(ctx, &pb.ModelConfigRequest{Name: "simple"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.MaxBatchSize != want.MaxBatchSize || len(cfg.Config.Input) != len(want.Input) ||
		!proto.Equal(cfg.Config.Output[0], want.Output[0]) || cfg.Config.Platform != repository.PlatformONNX {
		t.Errorf("ModelConfig = %v, want config.pbtxt's %v (normalized)", cfg.Config, want)
	}
	md, err := s.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "simple"})
	if err != nil {
		t.Fatal(err)
	}
	if got := md.Inputs[0]; got.Name != "INPUT0" || got.Datatype != "INT32" || !slices.Equal(got.Shape, []int64{-1, 16}) {
		t.Errorf("ModelMetadata input 0 = %v, want INPUT0 INT32 [-1 16]", got)
	}
	if !slices.Equal(md.Versions, []string{"1"}) {
		t.Errorf("versions = %v, want [1]", md.Versions)
	}

	resp, err := s.ModelInfer(ctx, &pb.ModelInferRequest{
		ModelName: "simple", Id: "r1",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "INPUT0", Datatype: "INT32", Shape: []int64{3, 16}},
			{Name: "INPUT1", Datatype: "INT32", Shape: []int64{3, 16}},
		},
		RawInputContents: [][]byte{make([]byte, 3*64), make([]byte, 3*64)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Id != "r1" || resp.ModelName != "simple" || resp.ModelVersion != "1" || len(resp.Outputs) != 2 {
		t.Fatalf("response = %v", resp)
	}
	for i, o := range resp.Outputs {
		if o.Name != []string{"OUTPUT0", "OUTPUT1"}[i] || o.Datatype != "INT32" || !slices.Equal(o.Shape, []int64{3, 16}) {
			t.Errorf("output %d = %v, want OUTPUT%d INT32 [3 16]", i, o, i)
		}
		if raw := resp.RawOutputContents[i]; !bytes.Equal(raw, make([]byte, 3*16*4)) {
			t.Errorf("output %d: %d bytes %x, want 192 zero bytes", i, len(raw), raw)
		}
	}
}

func TestInferShapes(t *testing.T) {
	s, err := Load(repo(t, map[string]string{"var": varConfig}), []string{"var"}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	in := []*pb.ModelInferRequest_InferInputTensor{{Name: "IN", Datatype: "FP32", Shape: []int64{2, 5}}}
	for _, tt := range []struct {
		name    string
		outputs []string
		want    map[string][]int64
		bytes   map[string]int
	}{
		{"every output", nil,
			map[string][]int64{"TEXT": {2}, "VALUES": {2, 5, 3}},
			map[string]int{"TEXT": 2 * 4, "VALUES": 2 * 5 * 3 * 2}},
		{"one asked for", []string{"VALUES"},
			map[string][]int64{"VALUES": {2, 5, 3}}, map[string]int{"VALUES": 60}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := &pb.ModelInferRequest{ModelName: "var", Inputs: in}
			for _, o := range tt.outputs {
				req.Outputs = append(req.Outputs, &pb.ModelInferRequest_InferRequestedOutputTensor{Name: o})
			}
			resp, err := s.ModelInfer(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Outputs) != len(tt.want) {
				t.Fatalf("%d outputs, want %d", len(resp.Outputs), len(tt.want))
			}
			for i, o := range resp.Outputs {
				if !slices.Equal(o.Shape, tt.want[o.Name]) || len(resp.RawOutputContents[i]) != tt.bytes[o.Name] {
					t.Errorf("%s: shape %v, %d bytes; want %v, %d bytes", o.Name, o.Shape, len(resp.RawOutputContents[i]), tt.want[o.Name], tt.bytes[o.Name])
				}
			}
		})
	}
}

func TestInferErrors(t *testing.T) {
	root := filepath.Join("..", "..", "..", "models")
	s, err := Load(root, []string{"simple"}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	batch := func(n int64) []*pb.ModelInferRequest_InferInputTensor {
		return []*pb.ModelInferRequest_InferInputTensor{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{n, 16}}}
	}
	for _, tt := range []struct {
		name string
		req  *pb.ModelInferRequest
		code codes.Code
		msg  string
	}{
		{"unknown model", &pb.ModelInferRequest{ModelName: "nope", Inputs: batch(1)}, codes.NotFound, "'nope' is not found"},
		{"unknown version", &pb.ModelInferRequest{ModelName: "simple", ModelVersion: "7", Inputs: batch(1)}, codes.NotFound, "version 7"},
		{"no inputs", &pb.ModelInferRequest{ModelName: "simple"}, codes.InvalidArgument, "batch size, 1 to 8"},
		{"batch over max_batch_size", &pb.ModelInferRequest{ModelName: "simple", Inputs: batch(9)}, codes.InvalidArgument, "batch size, 1 to 8"},
		{"unknown output", &pb.ModelInferRequest{ModelName: "simple", Inputs: batch(1),
			Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "OUTPUT9"}}}, codes.InvalidArgument, "unexpected inference output 'OUTPUT9'"},
		// 8 x 16 INT32 is 512 bytes per output: two pass 1000 bytes only together.
		{"outputs over the limit", &pb.ModelInferRequest{ModelName: "simple", Inputs: batch(8)}, codes.InvalidArgument, "over the 1000 byte limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.ModelInfer(context.Background(), tt.req)
			if st := status.Convert(err); st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("error = %v, want %v containing %q", err, tt.code, tt.msg)
			}
		})
	}
	// The server goes on serving.
	if _, err := s.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "simple", Inputs: batch(1)}); err != nil {
		t.Errorf("a good request after bad ones: %v", err)
	}
}

func TestReadiness(t *testing.T) {
	s, err := Load(filepath.Join("..", "..", "..", "models"), []string{"simple"}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, want := range map[string]bool{"simple": true, "mlp": false} {
		r, err := s.ModelReady(ctx, &pb.ModelReadyRequest{Name: name})
		if err != nil || r.Ready != want {
			t.Errorf("ModelReady(%s) = %v, %v; want %v", name, r, err, want)
		}
	}
	if r, _ := s.ServerReady(ctx, &pb.ServerReadyRequest{}); !r.Ready {
		t.Error("server not ready")
	}
}

func TestLoadErrors(t *testing.T) {
	root := repo(t, map[string]string{
		"noio":  `max_batch_size: 0`,
		"bad":   `max_batch_size: "x"`,
		"other": `name: "elsewhere" ` + varConfig,
	})
	if err := os.MkdirAll(filepath.Join(root, "nover"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "nover", repository.ConfigFile), []byte(varConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		model, want string
	}{
		{"noio", "declares no inputs or no outputs"},
		{"bad", "invalid model configuration"},
		{"other", "does not match the model folder"},
		{"nover", "no version folder"},
		{"missing", "declares no inputs or no outputs"}, // no config.pbtxt at all
		{"../x", "model name"},
	} {
		if _, err := Load(root, []string{tt.model}, 1<<20); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%s) = %v, want an error containing %q", tt.model, err, tt.want)
		}
	}
	if _, err := Load(root, nil, 1<<20); err == nil {
		t.Error("Load with no models: no error")
	}
}
