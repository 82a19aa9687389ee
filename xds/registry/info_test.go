package registry

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
)

func goodInfo() *registryv1.ModelInfo {
	return &registryv1.ModelInfo{
		Platform: "onnxruntime_onnx", MaxBatchSize: 8,
		Inputs:     []*registryv1.TensorInfo{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{16}}},
		Outputs:    []*registryv1.TensorInfo{{Name: "OUTPUT0", Datatype: "FP32", Shape: []int64{-1, 3}}},
		ConfigJson: `{"name":"simple"}`,
	}
}

func TestCheckInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*registryv1.ModelInfo)
		want string // "" valid
	}{
		{"good", func(*registryv1.ModelInfo) {}, ""},
		{"empty", func(i *registryv1.ModelInfo) { proto.Reset(i) }, ""},
		{"no config", func(i *registryv1.ModelInfo) { i.ConfigJson = "" }, ""},
		{"config with leading space", func(i *registryv1.ModelInfo) { i.ConfigJson = "\n {}" }, ""},
		{"platform markup", func(i *registryv1.ModelInfo) { i.Platform = "<script>" }, "info.platform"},
		{"platform long", func(i *registryv1.ModelInfo) { i.Platform = strings.Repeat("a", 65) }, "info.platform"},
		{"negative batch", func(i *registryv1.ModelInfo) { i.MaxBatchSize = -1 }, "info.max_batch_size -1"},
		{"input without name", func(i *registryv1.ModelInfo) { i.Inputs[0].Name = "" }, "info.inputs[0].name: empty"},
		{"input name control", func(i *registryv1.ModelInfo) { i.Inputs[0].Name = "a\x00b" }, "info.inputs[0].name"},
		{"input name not UTF-8", func(i *registryv1.ModelInfo) { i.Inputs[0].Name = "\xff" }, "info.inputs[0].name"},
		{"input name long", func(i *registryv1.ModelInfo) { i.Inputs[0].Name = strings.Repeat("n", 257) }, "longer than 256"},
		{"output datatype", func(i *registryv1.ModelInfo) { i.Outputs[0].Datatype = "FLOAT" }, `info.outputs[0].datatype "FLOAT"`},
		{"output shape", func(i *registryv1.ModelInfo) { i.Outputs[0].Shape = []int64{-2} }, "info.outputs[0].shape[0] -2"},
		{"rank", func(i *registryv1.ModelInfo) { i.Outputs[0].Shape = make([]int64, 65) }, "65 dimensions"},
		{"too many inputs", func(i *registryv1.ModelInfo) {
			i.Inputs = make([]*registryv1.TensorInfo, MaxTensorsPerModel+1)
		}, "info.inputs: 1025 tensors"},
		{"config not JSON", func(i *registryv1.ModelInfo) { i.ConfigJson = `{"a":` }, "info.config_json: not a JSON object"},
		{"config an array", func(i *registryv1.ModelInfo) { i.ConfigJson = `[1]` }, "not a JSON object"},
		{"config two values", func(i *registryv1.ModelInfo) { i.ConfigJson = `{} {}` }, "not a JSON object"},
		{"config too big", func(i *registryv1.ModelInfo) {
			i.ConfigJson = `{"a":"` + strings.Repeat("x", MaxConfigJSONBytes) + `"}`
		}, "at most 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := goodInfo()
			tc.edit(i)
			err := checkInfo(i)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// A bad description costs the model its catalogue entry's details, never
// its routing.
func TestBadInfoIsDroppedNotTheModel(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, _ := newTest(t, Config{Registerer: reg})
	bad := goodInfo()
	bad.ConfigJson = "not json"
	m := model("simple", true, "1")
	m.Info = bad
	ok := model("mlp", true, "1")
	ok.Info = goodInfo()
	mustRegister(t, r, registerReq("w1", "127.0.0.1", 8001, m, ok))
	snap := r.Snapshot()
	if !snap[0].Serves("simple") || snap[0].Models[1].Info != nil {
		t.Fatalf("simple: %+v", snap[0].Models[1])
	}
	if !proto.Equal(snap[0].Models[0].Info, goodInfo()) {
		t.Fatalf("mlp's info: %v", snap[0].Models[0].Info)
	}
	if n := testutil.ToFloat64(r.metrics.infoDrops); n != 1 {
		t.Errorf("helix_xds_registry_model_info_dropped_total = %v, want 1", n)
	}
}

// A renewal that changes only a model's info updates the catalogue's view
// without a signal (nothing to rebuild); one that changes nothing keeps
// the same Models array (the builder's fast path).
func TestRenewInfo(t *testing.T) {
	r, _ := newTest(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := r.Subscribe(ctx)
	withInfo := func(i *registryv1.ModelInfo) *registryv1.Model {
		m := model("simple", true, "1")
		m.Info = i
		return m
	}
	lease := mustRegister(t, r, registerReq("w1", "127.0.0.1", 8001, withInfo(goodInfo())))
	<-changed
	before := r.Snapshot()[0].Models

	renew := func(m *registryv1.Model) {
		t.Helper()
		if _, err := r.Renew(context.Background(), &registryv1.RenewRequest{LeaseId: lease, Ready: true, Models: []*registryv1.Model{m}}); err != nil {
			t.Fatal(err)
		}
	}
	renew(withInfo(goodInfo())) // the same, in a new message
	if after := r.Snapshot()[0].Models; &after[0] != &before[0] {
		t.Error("an unchanged renewal replaced the models")
	}
	next := goodInfo()
	next.MaxBatchSize = 16
	renew(withInfo(next))
	if got := r.Snapshot()[0].Models[0].Info.GetMaxBatchSize(); got != 16 {
		t.Errorf("max_batch_size %d after the renewal, want 16", got)
	}
	renew(withInfo(nil))
	if got := r.Snapshot()[0].Models[0].Info; got != nil {
		t.Errorf("info %v after a renewal without one", got)
	}
	select {
	case <-changed:
		t.Error("a change of info alone signalled the builder")
	default:
	}
}

// sequence_batching routes (the gateway's sequence clusters and routes):
// a renewal that turns it on or off signals the builder like a readiness
// change, and it is kept from an info that fails the check.
func TestRenewSequence(t *testing.T) {
	r, _ := newTest(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := r.Subscribe(ctx)
	withSeq := func(on bool, bad bool) *registryv1.Model {
		m := model("acc", true, "1")
		m.Info = goodInfo()
		m.Info.SequenceBatching = on
		if bad {
			m.Info.ConfigJson = "not json"
		}
		return m
	}
	lease := mustRegister(t, r, registerReq("w1", "127.0.0.1", 8001, withSeq(false, false)))
	<-changed
	if r.Snapshot()[0].Models[0].Sequence {
		t.Fatal("sequence without sequence_batching")
	}
	for i, c := range []struct{ on, bad bool }{{true, false}, {false, false}, {true, true}} {
		if _, err := r.Renew(context.Background(), &registryv1.RenewRequest{LeaseId: lease, Ready: true, Models: []*registryv1.Model{withSeq(c.on, c.bad)}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-changed:
		default:
			t.Errorf("renewal %d (sequence_batching %v) did not signal", i, c.on)
		}
		m := r.Snapshot()[0].Models[0]
		if m.Sequence != c.on || (m.Info == nil) != c.bad {
			t.Errorf("renewal %d: sequence %v, info %v", i, m.Sequence, m.Info)
		}
	}
}

func FuzzCheckInfo(f *testing.F) {
	f.Add("onnxruntime_onnx", int32(8), "INPUT0", "INT32", int64(16), `{"name":"simple"}`)
	f.Add("", int32(-1), "", "FLOAT", int64(-2), `[`)
	f.Add("cuda", int32(0), "a\x00", "BYTES", int64(-1), " {\"a\":[1,2,{}]}")
	f.Fuzz(func(t *testing.T, platform string, mbs int32, name, datatype string, dim int64, config string) {
		i := &registryv1.ModelInfo{
			Platform: platform, MaxBatchSize: mbs, ConfigJson: config,
			Inputs: []*registryv1.TensorInfo{{Name: name, Datatype: datatype, Shape: []int64{dim}}},
		}
		if err := checkInfo(i); err != nil {
			return
		}
		// What passes is safe to embed and to show: a JSON object or
		// nothing, printable names, known datatypes.
		if config != "" && !strings.HasPrefix(strings.TrimLeft(config, " \t\r\n"), "{") {
			t.Fatalf("config %q passed", config)
		}
		if !printable(name) || name == "" || dim < -1 || mbs < 0 || !isToken(platform) {
			t.Fatalf("passed: %v", i)
		}
		if !equalInfo(i, proto.Clone(i).(*registryv1.ModelInfo)) {
			t.Fatal("equalInfo: a clone differs")
		}
	})
}
