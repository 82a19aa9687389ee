package repository

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

const simpleConfig = `
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
instance_group [ { count: 2 kind: KIND_CPU } ]
`

var simpleIO = struct{ in, out []backend.IO }{
	in: []backend.IO{
		{Name: "INPUT0", DataType: tensor.Int32, Shape: []int64{-1, 16}},
		{Name: "INPUT1", DataType: tensor.Int32, Shape: []int64{-1, 16}},
	},
	out: []backend.IO{
		{Name: "OUTPUT0", DataType: tensor.Int32, Shape: []int64{-1, 16}},
		{Name: "OUTPUT1", DataType: tensor.Int32, Shape: []int64{-1, 16}},
	},
}

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(simpleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "simple" || cfg.MaxBatchSize != 8 || len(cfg.Input) != 2 || cfg.InstanceGroup[0].Count != 2 {
		t.Fatalf("parsed %v", cfg)
	}
	if got := cfg.GetDynamicBatching().GetPreferredBatchSize(); !slices.Equal(got, []int32{4, 8}) {
		t.Fatalf("preferred_batch_size = %v", got)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"unknown field", "name: \"x\"\nbogus_field: 1", "bogus_field"},
		{"bad enum", "input [{ name: \"a\" data_type: TYPE_NOPE }]", "TYPE_NOPE"},
		{"syntax", "input [{ name: ", "config.pbtxt"},
		{"wrong type", "max_batch_size: \"eight\"", "line 1:17"},
		{"line number", "name: \"x\"\n\nmax_batch_size: -", "3:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.text))
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalidConfig containing %q", err, tt.want)
			}
		})
	}
	if _, err := ParseConfig(make([]byte, MaxConfigBytes+1)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("oversized config: err = %v", err)
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *pb.ModelConfig
		wantErr string
	}{
		{"defaults", &pb.ModelConfig{}, ""},
		{"platform only", &pb.ModelConfig{Platform: PlatformONNX}, ""},
		{"name mismatch", &pb.ModelConfig{Name: "other"}, "does not match the model folder"},
		{"tensorflow", &pb.ModelConfig{Platform: PlatformTFSavedModel}, ""},
		{"pytorch backend only", &pb.ModelConfig{Backend: BackendTorch}, ""},
		{"pytorch with the onnx platform", &pb.ModelConfig{Backend: BackendTorch, Platform: PlatformONNX}, "not supported"},
		{"tensorflow graphdef", &pb.ModelConfig{Platform: "tensorflow_graphdef"}, "not supported"},
		{"cuda", &pb.ModelConfig{Backend: BackendCUDA}, ""},
		{"cuda with the onnx platform", &pb.ModelConfig{Backend: BackendCUDA, Platform: PlatformONNX}, ""},
		{"cuda with another platform", &pb.ModelConfig{Backend: BackendCUDA, Platform: "tensorrt_plan"}, "not supported"},
		{"path filename", &pb.ModelConfig{DefaultModelFilename: "../x.onnx"}, "must be a file name"},
		{"negative batch", &pb.ModelConfig{MaxBatchSize: -1}, "negative"},
		{"sequence", &pb.ModelConfig{SchedulingChoice: &pb.ModelConfig_SequenceBatching{SequenceBatching: &pb.ModelSequenceBatching{}}}, ""},
		{"iterative sequence", &pb.ModelConfig{SchedulingChoice: &pb.ModelConfig_SequenceBatching{SequenceBatching: &pb.ModelSequenceBatching{IterativeSequence: true}}}, "sequence_batching: iterative_sequence is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Normalize(tt.cfg, "m")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.cfg.Name != "m" || tt.cfg.Backend == "" || tt.cfg.DefaultModelFilename != DefaultModelFile(tt.cfg.Platform) {
					t.Fatalf("normalized to %v", tt.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSelectVersions(t *testing.T) {
	avail := []int64{1, 2, 3, 7}
	tests := []struct {
		name    string
		policy  *pb.ModelVersionPolicy
		want    []int64
		wantErr bool
	}{
		{"default latest 1", nil, []int64{7}, false},
		{"latest 2", &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Latest_{Latest: &pb.ModelVersionPolicy_Latest{NumVersions: 2}}}, []int64{3, 7}, false},
		{"latest 10", &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Latest_{Latest: &pb.ModelVersionPolicy_Latest{NumVersions: 10}}}, avail, false},
		{"all", &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_All_{All: &pb.ModelVersionPolicy_All{}}}, avail, false},
		{"specific", &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Specific_{Specific: &pb.ModelVersionPolicy_Specific{Versions: []int64{3, 1, 3}}}}, []int64{1, 3}, false},
		{"specific missing", &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Specific_{Specific: &pb.ModelVersionPolicy_Specific{Versions: []int64{4}}}}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SelectVersions(avail, tt.policy)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v (err %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestVersionsIgnoresNonNumeric(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"1", "10", "2", "01", "-3", "abc", ".git"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "5"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Versions(dir)
	if err != nil || !slices.Equal(got, []int64{1, 2, 10}) {
		t.Fatalf("Versions = %v, %v", got, err)
	}
}

func TestAutoCompleteFromNothing(t *testing.T) {
	cfg := &pb.ModelConfig{}
	if err := Normalize(cfg, "simple"); err != nil {
		t.Fatal(err)
	}
	AutoComplete(cfg, simpleIO.in, simpleIO.out)
	if cfg.MaxBatchSize != DefaultMaxBatchSize || cfg.GetDynamicBatching() == nil {
		t.Fatalf("batching not completed: %v", cfg)
	}
	if len(cfg.Input) != 2 || !slices.Equal(cfg.Input[0].Dims, []int64{16}) || cfg.Input[0].DataType != pb.DataType_TYPE_INT32 {
		t.Fatalf("inputs = %v", cfg.Input)
	}
	if Instances(cfg) != 1 || cfg.InstanceGroup[0].Kind != pb.ModelInstanceGroup_KIND_CPU {
		t.Fatalf("instance_group = %v", cfg.InstanceGroup)
	}
	if err := Validate(cfg, simpleIO.in, simpleIO.out); err != nil {
		t.Fatal(err)
	}
}

func TestAutoCompletePartial(t *testing.T) {
	cfg := &pb.ModelConfig{MaxBatchSize: 8, Input: []*pb.ModelInput{{Name: "INPUT1"}}}
	AutoComplete(cfg, simpleIO.in, simpleIO.out)
	if len(cfg.Input) != 2 || cfg.Input[0].Name != "INPUT1" || cfg.Input[0].DataType != pb.DataType_TYPE_INT32 {
		t.Fatalf("inputs = %v", cfg.Input)
	}
	if cfg.GetDynamicBatching() != nil {
		t.Fatal("dynamic batching must not be switched on when max_batch_size was given")
	}
	if err := Validate(cfg, simpleIO.in, simpleIO.out); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	base := func() *pb.ModelConfig {
		cfg, err := ParseConfig([]byte(simpleConfig))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	fixedIn := []backend.IO{
		{Name: "INPUT0", DataType: tensor.Int32, Shape: []int64{1, 16}},
		{Name: "INPUT1", DataType: tensor.Int32, Shape: []int64{1, 16}},
	}
	tests := []struct {
		name   string
		mutate func(*pb.ModelConfig)
		in     []backend.IO
		want   string
	}{
		{"ok", func(*pb.ModelConfig) {}, nil, ""},
		{"wrong type", func(c *pb.ModelConfig) { c.Input[0].DataType = pb.DataType_TYPE_FP32 }, nil, "data_type TYPE_FP32, the model says TYPE_INT32"},
		{"wrong dims", func(c *pb.ModelConfig) { c.Input[1].Dims = []int64{8} }, nil, `input "INPUT1" has dims [8]`},
		{"zero dim", func(c *pb.ModelConfig) { c.Input[1].Dims = []int64{0} }, nil, "each must be positive or -1"},
		{"unknown input", func(c *pb.ModelConfig) { c.Input[0].Name = "X" }, nil, `input "X" is not an input of the model`},
		{"duplicate", func(c *pb.ModelConfig) { c.Output[1].Name = "OUTPUT0" }, nil, "declared twice"},
		{"unknown output", func(c *pb.ModelConfig) { c.Output[1].Name = "Y" }, nil, `output "Y" is not an output`},
		{"preferred over max", func(c *pb.ModelConfig) { c.GetDynamicBatching().PreferredBatchSize = []int32{16} }, nil, "preferred_batch_size 16"},
		{"gpu kind", func(c *pb.ModelConfig) { c.InstanceGroup[0].Kind = pb.ModelInstanceGroup_KIND_GPU }, nil, "KIND_GPU is not supported"},
		{"cuda on gpus", func(c *pb.ModelConfig) {
			c.Backend = BackendCUDA
			c.InstanceGroup[0].Kind = pb.ModelInstanceGroup_KIND_GPU
			c.InstanceGroup[0].Gpus = []int32{0, 1}
		}, nil, ""},
		{"cuda on the cpu", func(c *pb.ModelConfig) { c.Backend = BackendCUDA }, nil, "KIND_CPU is not supported by the cuda backend (use KIND_GPU)"},
		{"negative gpu", func(c *pb.ModelConfig) {
			c.Backend = BackendCUDA
			c.InstanceGroup[0].Kind = pb.ModelInstanceGroup_KIND_GPU
			c.InstanceGroup[0].Gpus = []int32{-1}
		}, nil, "instance_group[0].gpus [-1]"},
		{"gpus on the cpu", func(c *pb.ModelConfig) { c.InstanceGroup[0].Gpus = []int32{0} }, nil, "gpus is set but the kind is KIND_CPU"},
		{"batching on fixed model", func(*pb.ModelConfig) {}, fixedIn, "no variable batch dimension"},
		{"dynamic without batching", func(c *pb.ModelConfig) { c.MaxBatchSize = 0 }, fixedIn, "dims [16], the model's shape is [1 16]"},
		{"reshape", func(c *pb.ModelConfig) {
			c.Input[0].Dims = []int64{4, 4}
			c.Input[0].Reshape = &pb.ModelTensorReshape{Shape: []int64{16}}
		}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.mutate(cfg)
			in := tt.in
			if in == nil {
				in = simpleIO.in
			}
			err := Validate(cfg, in, simpleIO.out)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestModelNamesAndFingerprint(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"b", "a", ".hidden"} {
		if err := os.MkdirAll(filepath.Join(root, d, "1"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	names, err := ModelNames(root)
	if err != nil || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("ModelNames = %v, %v", names, err)
	}
	before, err := Fingerprint(filepath.Join(root, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a", "1", "model.onnx"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := Fingerprint(filepath.Join(root, "a"))
	if err != nil || after == before {
		t.Fatalf("fingerprint did not change: %v", err)
	}
}

// The repository loads only models the gateway can route (the rule's own
// table is internal/wire's); the error names the folder and the reason.
func TestCheckModelName(t *testing.T) {
	for name, want := range map[string]string{
		"simple": "", "a-b_c.1": "",
		"my model": `model folder "my model": not a valid model name: byte 2 is ' ', white space`,
		"../x":     `model folder "../x": not a valid model name: starts with '.'`,
		"a*":       "wildcard",
	} {
		err := CheckModelName(name)
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("CheckModelName(%q) = %v, want %q", name, err, want)
		}
	}
}

// FuzzParseConfig feeds arbitrary text to the config parser and the checks
// that follow it: none may panic, and every failure must be ErrInvalidConfig.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(simpleConfig))
	f.Add([]byte("max_batch_size: 4 input [{name: \"a\" dims: [-1]}]"))
	f.Add([]byte("version_policy { specific { versions: [1, 2] } }"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			return
		}
		if err := Normalize(cfg, cfg.Name); err != nil {
			return
		}
		AutoComplete(cfg, simpleIO.in, simpleIO.out)
		_ = Validate(cfg, simpleIO.in, simpleIO.out)
		_, _ = SelectVersions([]int64{1, 2, 3}, cfg.VersionPolicy)
	})
}

func TestAutoCompleteCUDAGoesOnGPUs(t *testing.T) {
	cfg := &pb.ModelConfig{Name: "m", Backend: BackendCUDA}
	AutoComplete(cfg, simpleIO.in, simpleIO.out)
	if len(cfg.InstanceGroup) != 1 || cfg.InstanceGroup[0].Kind != pb.ModelInstanceGroup_KIND_GPU {
		t.Fatalf("instance groups %v, want one KIND_GPU group", cfg.InstanceGroup)
	}
	auto := &pb.ModelConfig{Name: "m", Backend: BackendCUDA, InstanceGroup: []*pb.ModelInstanceGroup{{Kind: pb.ModelInstanceGroup_KIND_AUTO}}}
	AutoComplete(auto, simpleIO.in, simpleIO.out)
	if auto.InstanceGroup[0].Kind != pb.ModelInstanceGroup_KIND_GPU {
		t.Errorf("KIND_AUTO became %s for the cuda backend", auto.InstanceGroup[0].Kind)
	}
	if err := Validate(cfg, simpleIO.in, simpleIO.out); err != nil {
		t.Error(err)
	}
}
