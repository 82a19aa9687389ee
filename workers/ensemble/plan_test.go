package ensemble

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/repository"
)

// stepModels are the configs fakeLookup knows: "scale" (UINT8 X [4] ->
// FP32 Y [4]), "add" (FP32 A, B [4] -> FP32 SUM [4]), "small" (batches
// at most 2), "flat" (no batching, FP32 X [4,2] -> FP32 Y [4,2]) and
// "stream" (decoupled).
var stepModels = map[string]string{
	"scale": `name: "scale" max_batch_size: 8
input [{ name: "X" data_type: TYPE_UINT8 dims: [4] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [4] }]`,
	"add": `name: "add" max_batch_size: 8
input [{ name: "A" data_type: TYPE_FP32 dims: [4] }, { name: "B" data_type: TYPE_FP32 dims: [4] }, { name: "BIAS" data_type: TYPE_FP32 dims: [4] optional: true }]
output [{ name: "SUM" data_type: TYPE_FP32 dims: [4] }]`,
	"small": `name: "small" max_batch_size: 2
input [{ name: "X" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [4] }]`,
	"flat": `name: "flat" max_batch_size: 0
input [{ name: "X" data_type: TYPE_FP32 dims: [4, 2] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [4, 2] }]`,
	"stream": `name: "stream" max_batch_size: 8 model_transaction_policy { decoupled: true }
input [{ name: "X" data_type: TYPE_FP32 dims: [4] }]
output [{ name: "Y" data_type: TYPE_FP32 dims: [4] }]`,
}

func fakeLookup(model string, version int64) (*pb.ModelConfig, error) {
	text, ok := stepModels[model]
	if !ok {
		return nil, fmt.Errorf("model '%s' is not loaded", model)
	}
	if version != Latest && version != 1 {
		return nil, fmt.Errorf("model '%s' version %d is not loaded", model, version)
	}
	cfg := &pb.ModelConfig{}
	if err := prototext.Unmarshal([]byte(text), cfg); err != nil {
		panic(err)
	}
	return cfg, nil
}

// ensembleConfig parses an ensemble config and normalizes it as a load does.
func ensembleConfig(t testing.TB, text string) *pb.ModelConfig {
	t.Helper()
	cfg, err := repository.ParseConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := repository.Normalize(cfg, "ens"); err != nil {
		t.Fatalf("normalize: %v", err)
	}
	return cfg
}

// diamond: IMG -> scale -> F; F + F -> add -> OUT.
const diamond = `name: "ens" platform: "ensemble" max_batch_size: 8
input [{ name: "IMG" data_type: TYPE_UINT8 dims: [4] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [4] }, { name: "F" data_type: TYPE_FP32 dims: [4] }]
ensemble_scheduling { step [
  { model_name: "scale" model_version: -1 input_map { key: "X" value: "IMG" } output_map { key: "Y" value: "F" } },
  { model_name: "add" model_version: -1 input_map [{ key: "A" value: "F" }, { key: "B" value: "F" }] output_map { key: "SUM" value: "OUT" } }
] }`

func TestNewValid(t *testing.T) {
	p, err := New(ensembleConfig(t, diamond), fakeLookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.steps[1].deps; len(got) != 1 || got[0] != 0 {
		t.Errorf("step 1 deps = %v, want [0]", got)
	}
	if got := p.needed([]string{"F"}); !got[0] || got[1] {
		t.Errorf("needed(F) = %v, want only step 0", got)
	}
	if got := Models(ensembleConfig(t, diamond)); len(got) != 2 || got[0] != (StepModel{"scale", Latest}) {
		t.Errorf("Models = %v", got)
	}
}

// TestNewShapesAsTriton: a tensor may pass between a batching and a
// non-batching model when the dims agree ([4] and [4]) or the full shapes
// do ([-1, 4] and [-1, 4]); an ensemble input's reshape is what its steps
// see.
func TestNewShapesAsTriton(t *testing.T) {
	saved := stepModels["flat"]
	t.Cleanup(func() { stepModels["flat"] = saved })
	for _, flat := range []string{"[4]", "[-1, 4]"} {
		stepModels["flat"] = `name: "flat" max_batch_size: 0
input [{ name: "X" data_type: TYPE_FP32 dims: ` + flat + ` }]
output [{ name: "Y" data_type: TYPE_FP32 dims: ` + flat + ` }]`
		_, err := New(ensembleConfig(t, `name: "ens" platform: "ensemble" max_batch_size: 8
input [{ name: "IMG" data_type: TYPE_UINT8 dims: [2, 2] reshape { shape: [4] } }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [4] }]
ensemble_scheduling { step [
  { model_name: "scale" model_version: -1 input_map { key: "X" value: "IMG" } output_map { key: "Y" value: "F" } },
  { model_name: "flat" model_version: -1 input_map { key: "X" value: "F" } output_map { key: "Y" value: "OUT" } }
] }`), fakeLookup)
		if err != nil {
			t.Errorf("flat dims %s: %v", flat, err)
		}
	}
}

// TestNewErrors: each bad DAG is refused at load with an error that wraps
// ErrInvalidConfig (or the lookup's error) and names the step and tensor.
func TestNewErrors(t *testing.T) {
	const head = `name: "ens" platform: "ensemble" max_batch_size: 8
input [{ name: "IMG" data_type: TYPE_UINT8 dims: [4] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [4] }]
`
	step := func(model, in, out string) string {
		return fmt.Sprintf(`{ model_name: %q model_version: -1 input_map [%s] output_map [%s] }`, model, in, out)
	}
	kv := func(k, v string) string { return fmt.Sprintf(`{ key: %q value: %q }`, k, v) }
	steps := func(s ...string) string { return "ensemble_scheduling { step [" + strings.Join(s, ",") + "] }" }
	scale := step("scale", kv("X", "IMG"), kv("Y", "F"))
	tests := []struct {
		name, config string
		want         []string
	}{
		{"cycle", head + steps(scale,
			step("add", kv("A", "F")+","+kv("B", "G"), kv("SUM", "H")),
			step("small", kv("X", "H"), kv("Y", "G")),
			step("small", kv("X", "H"), kv("Y", "OUT"))),
			[]string{"steps form a cycle", "step 1 ('add') -> step 2 ('small') -> step 1 ('add')"}},
		{"step reads its own output", head + steps(scale, step("small", kv("X", "OUT"), kv("Y", "OUT"))),
			[]string{"step 1 ('small')", "tensor 'OUT', which the step itself produces"}},
		{"missing tensor", head + steps(scale, step("add", kv("A", "F")+","+kv("B", "NOPE"), kv("SUM", "OUT"))),
			[]string{"step 1 ('add')", "input 'B' reads tensor 'NOPE', which is neither an ensemble input nor any step's output"}},
		{"tensor produced twice", head + steps(scale, step("small", kv("X", "F"), kv("Y", "F")), step("small", kv("X", "F"), kv("Y", "OUT"))),
			[]string{"step 1 ('small')", "tensor 'F', which step 0 ('scale') already produces"}},
		{"step writes an ensemble input", head + steps(scale, step("small", kv("X", "F"), kv("Y", "IMG")), step("small", kv("X", "F"), kv("Y", "OUT"))),
			[]string{"step 1 ('small')", "'IMG', which is an input of the ensemble"}},
		{"output not produced", head + steps(scale), []string{"output 'OUT' is not produced by any step"}},
		{"step output unused", head + steps(scale, step("add", kv("A", "F")+","+kv("B", "F"), kv("SUM", "OUT")), step("small", kv("X", "F"), kv("Y", "LOST"))),
			[]string{"step 2 ('small')", "output 'Y' is mapped to tensor 'LOST', which no step reads and is not an output of the ensemble"}},
		{"input not read", `name: "ens" platform: "ensemble" max_batch_size: 8
input [{ name: "IMG" data_type: TYPE_UINT8 dims: [4] }, { name: "EXTRA" data_type: TYPE_UINT8 dims: [4] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [4] }]
` + steps(step("scale", kv("X", "IMG"), kv("Y", "OUT"))), []string{"input 'EXTRA' is not read by any step"}},
		{"unknown model", head + steps(step("nosuch", kv("X", "IMG"), kv("Y", "OUT"))),
			[]string{"step 0 ('nosuch')", "model 'nosuch' is not loaded"}},
		{"unknown version", head + steps(`{ model_name: "scale" model_version: 7 input_map { key: "X" value: "IMG" } output_map { key: "Y" value: "OUT" } }`),
			[]string{"step 0 ('scale')", "version 7 is not loaded"}},
		{"unknown step input", head + steps(step("scale", kv("X", "IMG")+","+kv("Z", "IMG"), kv("Y", "OUT"))),
			[]string{"step 0 ('scale')", "input_map names 'Z', which is not an input of model 'scale' (its inputs: [X])"}},
		{"unknown step output", head + steps(step("scale", kv("X", "IMG"), kv("Q", "OUT"))),
			[]string{"step 0 ('scale')", "output_map names 'Q', which is not an output of model 'scale'"}},
		{"step input not mapped", head + steps(scale, step("add", kv("A", "F"), kv("SUM", "OUT"))),
			[]string{"step 1 ('add')", "input 'B' of model 'add' is not in input_map"}},
		{"data type mismatch", head + steps(scale, step("scale", kv("X", "F"), kv("Y", "OUT"))),
			[]string{"tensor 'F' does not match", "input 'X' of step 1 ('scale') (UINT8 [-1 4]) is produced by output 'Y' of step 0 ('scale') (FP32 [-1 4])"}},
		{"shape mismatch", head + steps(scale, step("flat", kv("X", "F"), kv("Y", "OUT"))),
			[]string{"tensor 'F' does not match", "input 'X' of step 1 ('flat') (FP32 [4 2])", "output 'Y' of step 0 ('scale') (FP32 [-1 4])"}},
		{"ensemble output type mismatch", `name: "ens" platform: "ensemble" max_batch_size: 8
input [{ name: "IMG" data_type: TYPE_UINT8 dims: [4] }]
output [{ name: "OUT" data_type: TYPE_INT32 dims: [4] }]
` + steps(step("scale", kv("X", "IMG"), kv("Y", "OUT"))),
			[]string{"tensor 'OUT' does not match", "ensemble output 'OUT' (INT32 [-1 4]) is produced by output 'Y' of step 0 ('scale')"}},
		{"step batches less", head + steps(scale, step("small", kv("X", "F"), kv("Y", "OUT"))),
			[]string{"step 1 ('small')", "max_batch_size is 8 but model 'small' allows at most 2"}},
		{"decoupled step", head + steps(scale, step("stream", kv("X", "F"), kv("Y", "OUT"))),
			[]string{"step 1 ('stream')", "is decoupled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(ensembleConfig(t, tt.config), fakeLookup)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if !strings.HasPrefix(tt.name, "unknown model") && !strings.HasPrefix(tt.name, "unknown version") && !errors.Is(err, repository.ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

// TestNormalizeEnsemble: the repository's checks of an ensemble config on
// its own, before any step model is looked at.
func TestNormalizeEnsemble(t *testing.T) {
	const io = `input [{ name: "IMG" data_type: TYPE_UINT8 dims: [4] }] output [{ name: "OUT" data_type: TYPE_FP32 dims: [4] }] `
	const oneStep = `ensemble_scheduling { step [{ model_name: "scale" model_version: -1 input_map { key: "X" value: "IMG" } output_map { key: "Y" value: "OUT" } }] }`
	tests := []struct{ name, config, want string }{
		{"no scheduling", `platform: "ensemble" ` + io, `platform "ensemble" needs ensemble_scheduling`},
		{"scheduling without platform", `backend: "onnxruntime" ` + io + oneStep, `ensemble_scheduling is set but platform is "onnxruntime_onnx"`},
		{"no steps", `platform: "ensemble" ` + io + `ensemble_scheduling {}`, "ensemble_scheduling has no step"},
		{"optimization", `platform: "ensemble" optimization { priority: PRIORITY_MAX } ` + io + oneStep, "optimization is not allowed for ensemble 'ens'"},
		{"warmup", `platform: "ensemble" model_warmup [{ name: "w" batch_size: 1 }] ` + io + oneStep, "model_warmup is not allowed for ensemble 'ens'"},
		{"instance group", `platform: "ensemble" instance_group [{ count: 2 }] ` + io + oneStep, "instance_group is not allowed for ensemble 'ens'"},
		{"no input", `platform: "ensemble" output [{ name: "OUT" data_type: TYPE_FP32 dims: [4] }] ` + oneStep, "ensemble 'ens' declares no input"},
		{"no dims", `platform: "ensemble" input [{ name: "IMG" data_type: TYPE_UINT8 }] output [{ name: "OUT" data_type: TYPE_FP32 dims: [4] }] ` + oneStep, `input "IMG" has no dims`},
		{"no data type", `platform: "ensemble" input [{ name: "IMG" dims: [4] }] output [{ name: "OUT" data_type: TYPE_FP32 dims: [4] }] ` + oneStep, `input "IMG" has data_type TYPE_INVALID`},
		{"bad reshape", `platform: "ensemble" input [{ name: "IMG" data_type: TYPE_UINT8 dims: [4] reshape { shape: [0, 4] } }] output [{ name: "OUT" data_type: TYPE_FP32 dims: [4] }] ` + oneStep, "has reshape [0 4]"},
		{"input and output share a name", `platform: "ensemble" input [{ name: "IMG" data_type: TYPE_UINT8 dims: [4] }] output [{ name: "IMG" data_type: TYPE_FP32 dims: [4] }] ` + oneStep, "'IMG' is declared twice"},
		{"step without model", `platform: "ensemble" ` + io + `ensemble_scheduling { step [{ input_map { key: "X" value: "IMG" } output_map { key: "Y" value: "OUT" } }] }`, "step 0: model_name is empty"},
		{"step names the ensemble", `platform: "ensemble" ` + io + `ensemble_scheduling { step [{ model_name: "ens" input_map { key: "X" value: "IMG" } output_map { key: "Y" value: "OUT" } }] }`, "step 0 names the ensemble itself"},
		{"bad model name", `platform: "ensemble" ` + io + `ensemble_scheduling { step [{ model_name: "../x" input_map { key: "X" value: "IMG" } output_map { key: "Y" value: "OUT" } }] }`, `step 0: model_name "../x"`},
		{"bad version", `platform: "ensemble" ` + io + `ensemble_scheduling { step [{ model_name: "scale" model_version: -2 input_map { key: "X" value: "IMG" } output_map { key: "Y" value: "OUT" } }] }`, "step 0 ('scale'): model_version -2"},
		{"namespace", `platform: "ensemble" ` + io + `ensemble_scheduling { step [{ model_name: "scale" model_namespace: "x" input_map { key: "X" value: "IMG" } output_map { key: "Y" value: "OUT" } }] }`, "model_namespace is not supported"},
		{"empty input map", `platform: "ensemble" ` + io + `ensemble_scheduling { step [{ model_name: "scale" output_map { key: "Y" value: "OUT" } }] }`, "step 0 ('scale'): input_map is empty"},
		{"empty output map", `platform: "ensemble" ` + io + `ensemble_scheduling { step [{ model_name: "scale" input_map { key: "X" value: "IMG" } }] }`, "step 0 ('scale'): output_map is empty"},
		{"empty map value", `platform: "ensemble" ` + io + `ensemble_scheduling { step [{ model_name: "scale" input_map { key: "X" value: "" } output_map { key: "Y" value: "OUT" } }] }`, "has an empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := repository.ParseConfig([]byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			err = repository.Normalize(cfg, "ens")
			if !errors.Is(err, repository.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalidConfig containing %q", err, tt.want)
			}
		})
	}
}

// FuzzNew: any config that parses and normalizes either builds a plan or
// is refused with an error; never a panic.
func FuzzNew(f *testing.F) {
	f.Add(diamond)
	f.Add(`name: "ens" platform: "ensemble" input [{ name: "A" data_type: TYPE_FP32 dims: [4] }] output [{ name: "B" data_type: TYPE_FP32 dims: [4] }]
ensemble_scheduling { step [{ model_name: "small" input_map { key: "X" value: "C" } output_map { key: "Y" value: "B" } }, { model_name: "small" input_map { key: "X" value: "B" } output_map { key: "Y" value: "C" } }] }`)
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := repository.ParseConfig([]byte(text))
		if err != nil || repository.Normalize(cfg, "ens") != nil || cfg.Platform != repository.PlatformEnsemble {
			return
		}
		p, err := New(cfg, fakeLookup)
		if err != nil {
			return
		}
		if p.findCycle() != nil {
			t.Fatal("a plan with a cycle was accepted")
		}
		for _, out := range p.outputs {
			if _, ok := p.producer[out]; !ok {
				t.Fatalf("output %q has no producer", out)
			}
		}
	})
}
