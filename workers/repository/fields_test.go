package repository

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

func TestCheckFields(t *testing.T) {
	const io = `input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }] output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }] `
	tests := []struct {
		name, config, want string // want "": accepted
	}{
		{"plain", io, ""},
		{"everything implemented", `name: "m" platform: "onnxruntime_onnx" max_batch_size: 8 ` + io +
			`version_policy { specific { versions: [ 1 ] } } default_model_filename: "m.onnx"
			 input [{ name: "I2" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 2, 2 ] reshape { shape: [ 12 ] } optional: true }]
			 dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 10 preserve_ordering: true priority_levels: 1
			   default_queue_policy { max_queue_size: 3 timeout_action: DELAY default_timeout_microseconds: 5 allow_timeout_override: true } }
			 instance_group [{ name: "g" kind: KIND_CPU count: 2 }]
			 parameters { key: "k" value { string_value: "v" } }
			 model_warmup [{ name: "w" batch_size: 1 count: 2 inputs { key: "IN" value { data_type: TYPE_FP32 dims: [ 4 ] random_data: true } } }]
			 response_cache { enable: true }`, ""},
		{"empty parent", io + `dynamic_batching { }`, ""},
		{"cuda graphs", io + `optimization { cuda { graphs: true } }`, "optimization.cuda.graphs is not supported by helix-worker"},
		{"empty optimization", io + `optimization { }`, ""},
		{"pinned memory", io + `optimization { input_pinned_memory { enable: true } output_pinned_memory { enable: true } }`, ""},
		{"priority", io + `optimization { priority: PRIORITY_MAX }`, "optimization.priority is not supported"},
		{"rate limiter", io + `instance_group [{ count: 1 }, { count: 1 rate_limiter { priority: 2 } }]`, "instance_group[1].rate_limiter.priority is not supported"},
		{"label file", `input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }] output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "l.txt" }]`, ""},
		{"output shape tensor", `input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }] output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] is_shape_tensor: true }]`,
			"output[0].is_shape_tensor is not supported"},
		{"ragged", `input [{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] allow_ragged_batch: true }] output [{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }]`,
			"input[0].allow_ragged_batch is not supported"},
		{"priority queue policy", io + `dynamic_batching { priority_queue_policy { key: 2 value { max_queue_size: 1 } } }`,
			`dynamic_batching.priority_queue_policy[2].max_queue_size is not supported`},
		{"several", io + `runtime: "x.so" metric_tags { key: "a" value: "b" } model_operations { op_library_filename: "x.so" }`,
			`runtime, metric_tags, model_operations.op_library_filename are not supported`},
		{"batch input", io + `batch_input [{ kind: BATCH_ELEMENT_COUNT target_name: "X" }]`, "batch_input[0].target_name is not supported"},
		{"agents", io + `model_repository_agents { agents [{ name: "checksum" }] }`, "model_repository_agents.agents[0].name is not supported"},
		{"model metrics", io + `model_metrics { }`, "model_metrics is not supported"},
		{"cc filenames", io + `cc_model_filenames { key: "7.5" value: "a.plan" }`, "cc_model_filenames is not supported"},
		{"host policy", io + `instance_group [{ count: 1 host_policy: "numa0" }]`, "instance_group[0].host_policy is not supported"},
		{"cache decoupled", io + `response_cache { enable: true } model_transaction_policy { decoupled: true }`, "response_cache cannot be enabled for a decoupled model"},
		{"cache sequence", io + `response_cache { enable: true } sequence_batching { }`, "response_cache cannot be enabled for a model with sequence_batching"},
		{"cache ensemble", io + `platform: "ensemble" response_cache { enable: true }`, "response_cache is not supported for ensembles"},
		{"cache off decoupled", io + `response_cache { enable: false } model_transaction_policy { decoupled: true }`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			err = checkFields(cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// Normalize runs the check: a load sees the refusal.
func TestNormalizeRefusesUnimplementedFields(t *testing.T) {
	cfg, err := ParseConfig([]byte(simpleConfig + `optimization { input_pinned_memory { enable: true } cuda { graphs: true } }`))
	if err != nil {
		t.Fatal(err)
	}
	err = Normalize(cfg, "simple")
	if err == nil || !strings.Contains(err.Error(), "optimization.cuda.graphs is not supported by helix-worker") {
		t.Fatalf("Normalize: %v", err)
	}
}

// The sample models' configs use only what the worker implements.
func TestSampleModelsUseImplementedFields(t *testing.T) {
	paths, err := filepath.Glob("../../models/*/" + ConfigFile)
	if err != nil || len(paths) == 0 {
		t.Fatalf("no sample model configs found (%v)", err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := ParseConfig(data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if err := checkFields(cfg); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// Every allow-list entry names a real field path.
func TestImplementedPathsExist(t *testing.T) {
	for path := range implemented {
		cfg, err := ParseConfig(nil)
		if err != nil {
			t.Fatal(err)
		}
		md := cfg.ProtoReflect().Descriptor()
		parts := strings.Split(path, ".")
		for i, part := range parts {
			fd := md.Fields().ByName(protoreflect.Name(part))
			if fd == nil {
				t.Fatalf("%s: no field %q", path, part)
			}
			if i < len(parts)-1 {
				if fd.IsMap() {
					md = fd.MapValue().Message()
				} else {
					md = fd.Message()
				}
				if md == nil {
					t.Fatalf("%s: %q is not a message", path, part)
				}
			}
		}
	}
}

func FuzzCheckFields(f *testing.F) {
	f.Add([]byte(simpleConfig))
	f.Add([]byte(`optimization { cuda { graph_spec [{ input { key: "a" value { dim: [1] } } }] } } model_warmup [{ inputs { key: "x" value { zero_data: true } } }]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		err = checkFields(cfg)
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("error does not wrap ErrInvalidConfig: %v", err)
		}
	})
}
