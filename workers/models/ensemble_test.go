package models

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// twiceConfig is an ensemble of two steps of "simple" (OUTPUT0 = INPUT0 +
// INPUT1 + 1000 at version 1, OUTPUT1 = INPUT0 - INPUT1): the second step
// adds the first one's sum and difference, so TWICE = 2*A + 2000.
const twiceConfig = `platform: "ensemble"
max_batch_size: 8
input [ { name: "A" data_type: TYPE_INT32 dims: [ 4 ] }, { name: "B" data_type: TYPE_INT32 dims: [ 4 ] } ]
output [ { name: "TWICE" data_type: TYPE_INT32 dims: [ 4 ] } ]
ensemble_scheduling { step [
  { model_name: "simple" model_version: -1
    input_map [ { key: "INPUT0" value: "A" }, { key: "INPUT1" value: "B" } ]
    output_map [ { key: "OUTPUT0" value: "S" }, { key: "OUTPUT1" value: "D" } ] },
  { model_name: "simple" model_version: 1
    input_map [ { key: "INPUT0" value: "S" }, { key: "INPUT1" value: "D" } ]
    output_map { key: "OUTPUT0" value: "TWICE" } }
] }
`

// outerConfig is an ensemble of the ensemble "aa_twice": OUT = TWICE.
const outerConfig = `platform: "ensemble"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_INT32 dims: [ 4 ] }, { name: "Y" data_type: TYPE_INT32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 4 ] } ]
ensemble_scheduling { step [
  { model_name: "aa_twice" model_version: -1
    input_map [ { key: "A" value: "X" }, { key: "B" value: "Y" } ]
    output_map { key: "TWICE" value: "OUT" } }
] }
`

// writeEnsemble writes an ensemble's folder: its config and empty version
// folders, as Triton lays them out.
func writeEnsemble(t *testing.T, root, name, config string, versions ...string) {
	t.Helper()
	for _, v := range versions {
		if err := os.MkdirAll(filepath.Join(root, name, v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, name, "config.pbtxt"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
}

func twiceRequest(model, a, b string) *infer.Request {
	return &infer.Request{Model: model, Inputs: []tensor.Tensor{
		{Name: a, DataType: tensor.Int32, Shape: []int64{1, 4}, Data: int32s(1, 2, 3, 4)},
		{Name: b, DataType: tensor.Int32, Shape: []int64{1, 4}, Data: int32s(1, 1, 1, 1)},
	}}
}

// TestEnsembleNoneMode: in none mode every ensemble loads after the models
// it runs, whatever the folder order ("a0_outer" includes "aa_twice",
// which runs "simple"); requests, metadata, config and statistics work.
func TestEnsembleNoneMode(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	writeEnsemble(t, root, "aa_twice", twiceConfig, "1")
	writeEnsemble(t, root, "a0_outer", outerConfig, "1", "3")
	m := newManager(t, root, ModeNone, &fakeBackend{})
	ctx := t.Context()

	resp, err := m.Infer(ctx, twiceRequest("aa_twice", "A", "B"))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Outputs[0]; got.Name != "TWICE" || string(got.Data) != string(int32s(2002, 2004, 2006, 2008)) || resp.Version != "1" {
		t.Fatalf("response %+v", resp)
	}
	req := twiceRequest("a0_outer", "X", "Y")
	resp, err = m.Infer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Outputs[0]; got.Name != "OUT" || string(got.Data) != string(int32s(2002, 2004, 2006, 2008)) || resp.Version != "3" {
		t.Fatalf("outer response %+v", resp)
	}
	if req.Usage.Rows != 1 || req.Usage.Compute <= 0 {
		t.Errorf("usage %+v", req.Usage)
	}

	if ok, _ := m.ModelReady(ctx, "aa_twice", ""); !ok {
		t.Error("ensemble not ready")
	}
	md, err := m.ModelMetadata(ctx, "a0_outer", "")
	if err != nil || md.Platform != "ensemble" || !slices.Equal(md.Versions, []string{"3"}) || md.Inputs[0].Name != "X" ||
		!slices.Equal(md.Outputs[0].Shape, []int64{-1, 4}) {
		t.Errorf("metadata %+v, %v", md, err)
	}
	cfg, err := m.ModelConfig(ctx, "aa_twice", "1")
	if err != nil || cfg.Platform != "ensemble" || cfg.DefaultModelFilename != "" || len(cfg.InstanceGroup) != 0 || len(cfg.GetEnsembleScheduling().GetStep()) != 2 {
		t.Errorf("config %v, %v", cfg, err)
	}
	st, err := m.ModelStatistics(ctx, "aa_twice", "")
	if err != nil || len(st) != 1 {
		t.Fatal(st, err)
	}
	// aa_twice served two requests (one direct, one from a0_outer);
	// simple served two steps of each.
	if s := st[0].InferenceStats; s.Success.Count != 2 || st[0].InferenceCount != 2 || st[0].ExecutionCount != 2 {
		t.Errorf("ensemble statistics %v", st[0])
	}
	st, _ = m.ModelStatistics(ctx, "simple", "")
	if n := st[0].InferenceStats.Success.Count; n != 4 {
		t.Errorf("simple served %d requests, want 4", n)
	}

	// A bad request is checked against the ensemble's own config.
	bad := twiceRequest("aa_twice", "A", "C")
	if _, err := m.Infer(ctx, bad); infer.CodeOf(err) != infer.CodeInvalidArgument || !strings.Contains(err.Error(), "unexpected inference input 'C' for model 'aa_twice'") {
		t.Errorf("err = %v", err)
	}
}

// TestEnsembleExplicitMode: loading an ensemble loads its step models; a
// step whose version is gone fails the request naming the step;
// unloading a step model unloads the ensembles that run it (as Triton
// does); unload_dependents unloads the step models too.
func TestEnsembleExplicitMode(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig+"version_policy { all {} }\n", 1, 2)
	writeEnsemble(t, root, "aa_twice", twiceConfig, "1")
	writeEnsemble(t, root, "a0_outer", outerConfig, "1")
	be := &fakeBackend{}
	m := newManager(t, root, ModeExplicit, be)
	ctx := t.Context()

	if err := m.LoadModel(ctx, "a0_outer", infer.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a0_outer", "aa_twice", "simple"} {
		if ok, _ := m.ModelReady(ctx, name, ""); !ok {
			t.Errorf("%s is not ready after loading a0_outer", name)
		}
	}
	resp, err := m.Infer(ctx, twiceRequest("a0_outer", "X", "Y"))
	if err != nil {
		t.Fatal(err)
	}
	// Step 0 runs simple's latest version (2), step 1 pins version 1.
	if got := resp.Outputs[0].Data; string(got) != string(int32s(3002, 3004, 3006, 3008)) {
		t.Errorf("OUT = %v", got)
	}

	// simple reloaded without version 1: aa_twice's step 1 fails, named.
	if err := m.LoadModel(ctx, "simple", infer.LoadOptions{ConfigJSON: `{"max_batch_size": 8}`}); err != nil {
		t.Fatal(err)
	}
	_, err = m.Infer(ctx, twiceRequest("a0_outer", "X", "Y"))
	want := "ensemble 'a0_outer' step 0 ('aa_twice'): ensemble 'aa_twice' step 1 ('simple'): Request for unknown model: 'simple' version 1 is not found"
	if infer.CodeOf(err) != infer.CodeNotFound || err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	st, _ := m.ModelStatistics(ctx, "a0_outer", "")
	if st[0].InferenceStats.Fail.Count != 1 {
		t.Errorf("outer statistics %v, want one failure", st[0])
	}

	// Unloading simple unloads both ensembles, outer first.
	if err := m.UnloadModel(ctx, "simple", false); err != nil {
		t.Fatal(err)
	}
	idx, _ := m.RepositoryIndex(ctx, false)
	for _, e := range idx {
		if e.Name == "aa_twice" && (e.State != infer.StateUnavailable || e.Reason != "unloaded: its step model 'simple' was unloaded") {
			t.Errorf("index entry %+v", e)
		}
		if e.Name == "a0_outer" && e.Reason != "unloaded: its step model 'aa_twice' was unloaded" {
			t.Errorf("index entry %+v", e)
		}
	}
	if n := be.live(); n != 0 {
		t.Errorf("%d instances of simple left", n)
	}

	// unload_dependents: the steps go too, except those another loaded
	// ensemble still runs.
	writeEnsemble(t, root, "other", strings.ReplaceAll(twiceConfig, "model_version: 1", "model_version: -1"), "1")
	for _, name := range []string{"a0_outer", "other"} {
		if err := m.LoadModel(ctx, name, infer.LoadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.UnloadModel(ctx, "a0_outer", true); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"a0_outer": false, "aa_twice": false, "simple": true, "other": true} {
		if ok, _ := m.ModelReady(ctx, name, ""); ok != want {
			t.Errorf("after unloading a0_outer with unload_dependents, %s ready = %v, want %v", name, ok, want)
		}
	}
	if err := m.UnloadModel(ctx, "other", true); err != nil {
		t.Fatal(err)
	}
	if ok, _ := m.ModelReady(ctx, "simple", ""); ok {
		t.Error("simple still ready after unloading its last ensemble with unload_dependents")
	}
}

// TestEnsembleLoadErrors: a load of a bad ensemble fails naming why; the
// repository index shows it UNAVAILABLE with that reason.
func TestEnsembleLoadErrors(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	writeEnsemble(t, root, "no_version", twiceConfig)
	writeEnsemble(t, root, "ring_a", strings.ReplaceAll(outerConfig, "aa_twice", "ring_b"), "1")
	writeEnsemble(t, root, "ring_b", strings.ReplaceAll(outerConfig, "aa_twice", "ring_a"), "1")
	writeEnsemble(t, root, "missing_step", strings.ReplaceAll(twiceConfig, `model_name: "simple" model_version: 1`, `model_name: "nosuch" model_version: 1`), "1")
	writeEnsemble(t, root, "old_version", strings.ReplaceAll(twiceConfig, `model_version: 1`, `model_version: 2`), "1")
	writeEnsemble(t, root, "cycle", strings.ReplaceAll(twiceConfig, `value: "A" }, { key: "INPUT1" value: "B" }`, `value: "A" }, { key: "INPUT1" value: "TWICE" }`), "1")
	m := newManager(t, root, ModeExplicit, &fakeBackend{})
	ctx := t.Context()
	tests := []struct {
		model string
		code  infer.Code
		want  string
	}{
		{"no_version", infer.CodeNotFound, "no version is available (an ensemble needs a numeric version folder, which may be empty)"},
		{"ring_a", infer.CodeInvalidArgument, "model 'ring_a' is being loaded already"},
		{"missing_step", infer.CodeNotFound, "ensemble 'missing_step' step 1 ('nosuch'): model 'nosuch' is not in the model repository"},
		{"old_version", infer.CodeNotFound, "ensemble 'old_version' step 1 ('simple'): model 'simple' version 2 is not loaded (loaded: [1])"},
		{"cycle", infer.CodeInvalidArgument, "steps form a cycle: step 0 ('simple') -> step 1 ('simple') -> step 0 ('simple')"},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			err := m.LoadModel(ctx, tt.model, infer.LoadOptions{})
			if infer.CodeOf(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (code %v), want %v containing %q", err, infer.CodeOf(err), tt.code, tt.want)
			}
		})
	}
	idx, _ := m.RepositoryIndex(ctx, false)
	for _, e := range idx {
		if e.Name == "nosuch" {
			t.Errorf("the index lists %+v, which the repository lacks", e)
		}
		if e.Name == "cycle" && (e.State != infer.StateUnavailable || !strings.Contains(e.Reason, "cycle")) {
			t.Errorf("index entry %+v", e)
		}
	}
}

// TestEnsembleNoneModeStepMissing: in none mode an ensemble whose step
// model cannot load is UNAVAILABLE, and the other models serve.
func TestEnsembleNoneModeStepMissing(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	writeEnsemble(t, root, "aa_twice", strings.ReplaceAll(twiceConfig, `model_name: "simple" model_version: -1`, `model_name: "broken" model_version: -1`), "1")
	if err := os.MkdirAll(filepath.Join(root, "broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Repository: root, ControlMode: ModeNone, Backends: map[string]backend.Backend{"onnxruntime": &fakeBackend{}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	idx, _ := m.RepositoryIndex(t.Context(), false)
	var reason string
	for _, e := range idx {
		if e.Name == "aa_twice" {
			reason = e.Reason
		}
	}
	if !strings.Contains(reason, "ensemble 'aa_twice' step 0 ('broken'): model 'broken' is not loaded") {
		t.Errorf("reason %q", reason)
	}
	if ok, _ := m.ModelReady(t.Context(), "simple", ""); !ok {
		t.Error("simple does not serve")
	}
}

// TestCloseDrainsEnsemblesFirst: a shutdown lets an ensemble request that
// is in flight finish its later steps: the step models stop serving only
// after the ensembles have drained.
func TestCloseDrainsEnsemblesFirst(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	writeEnsemble(t, root, "aa_twice", twiceConfig, "1")
	be := &fakeBackend{delay: 100 * time.Millisecond}
	m := newManager(t, root, ModeNone, be)
	errc := make(chan error, 1)
	go func() {
		_, err := m.Infer(context.Background(), twiceRequest("aa_twice", "A", "B"))
		errc <- err
	}()
	waitFor(t, func() bool { return be.executing.Load() > 0 }) // step 0 runs
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("the in-flight ensemble request failed at shutdown: %v", err)
	}
}

// TestEnsemblePollMode: an ensemble that appears in the repository is
// loaded by the next poll once its step model serves.
func TestEnsemblePollMode(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	m := newManager(t, root, ModePoll, &fakeBackend{})
	writeEnsemble(t, root, "aa_twice", twiceConfig, "1")
	waitFor(t, func() bool {
		ok, _ := m.ModelReady(t.Context(), "aa_twice", "")
		return ok
	})
	if _, err := m.Infer(t.Context(), twiceRequest("aa_twice", "A", "B")); err != nil {
		t.Fatal(err)
	}

	// Its step model leaves the repository: the ensemble is unloaded with
	// it; once the step model is back, the ensemble serves again.
	if err := os.Rename(filepath.Join(root, "simple"), filepath.Join(root, ".simple")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		ok, _ := m.ModelReady(t.Context(), "aa_twice", "")
		return !ok
	})
	if err := os.Rename(filepath.Join(root, ".simple"), filepath.Join(root, "simple")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		ok, _ := m.ModelReady(t.Context(), "aa_twice", "")
		return ok
	})
}

// TestEnsembleReshape: an ensemble's reshape is applied before its steps
// and undone on its outputs, as for any model.
func TestEnsembleReshape(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	cfg := strings.ReplaceAll(twiceConfig, `dims: [ 4 ] }`, `dims: [ 2, 2 ] reshape { shape: [ 4 ] } }`)
	writeEnsemble(t, root, "aa_twice", cfg, "1")
	m := newManager(t, root, ModeNone, &fakeBackend{})
	req := twiceRequest("aa_twice", "A", "B")
	for i := range req.Inputs {
		req.Inputs[i].Shape = []int64{1, 2, 2}
	}
	resp, err := m.Infer(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Outputs[0]; !slices.Equal(got.Shape, []int64{1, 2, 2}) || string(got.Data) != string(int32s(2002, 2004, 2006, 2008)) {
		t.Fatalf("TWICE = %v %v", got.Shape, got.Data)
	}
}
