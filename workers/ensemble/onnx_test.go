package ensemble_test

import (
	"context"
	"encoding/binary"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/onnxruntime"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/models"
	"github.com/helixflow/helixflow/workers/tensor"
)

// sampleRepository builds a model repository of the sample models
// preprocess, mlp and mlp_ensemble (scripts/make_models.py writes them
// into models/).
func sampleRepository(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("..", "..", "models"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"preprocess/1/model.onnx", "mlp/1/model.onnx", "mlp_ensemble/config.pbtxt"} {
		if _, err := os.Stat(filepath.Join(src, f)); err != nil {
			testdeps.Missing(t, "sample models missing (make models): %v", err)
		}
	}
	root := t.TempDir()
	for _, name := range []string{"preprocess", "mlp"} {
		if err := os.Symlink(filepath.Join(src, name), filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	// The ensemble's version folder is empty, so git keeps no copy of it.
	cfg, err := os.ReadFile(filepath.Join(src, "mlp_ensemble", "config.pbtxt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "mlp_ensemble", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "mlp_ensemble", "config.pbtxt"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func startWorker(t *testing.T) *models.Manager {
	t.Helper()
	root := sampleRepository(t)
	be, err := onnxruntime.New(onnxruntime.Options{IntraOpThreads: 1, InterOpThreads: 1})
	if err != nil {
		testdeps.Missing(t, "onnxruntime unavailable (make deps): %v", err)
	}
	m, err := models.New(models.Config{
		Repository: root, ControlMode: models.ModeNone, StrictReadiness: true,
		Backends: map[string]backend.Backend{onnxruntime.Name: be},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if err := be.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !m.Ready() {
		idx, _ := m.RepositoryIndex(t.Context(), false)
		t.Fatalf("worker not ready: %+v", idx)
	}
	return m
}

func image(batch, seed int) []byte {
	data := make([]byte, batch*256)
	for i := range data {
		data[i] = byte((i*7 + seed*13) % 256)
	}
	return data
}

func scaled(img []byte) []byte {
	out := make([]byte, 0, 4*len(img))
	for _, b := range img {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(b)/255))
	}
	return out
}

func floats(data []byte) []float32 {
	out := make([]float32, len(data)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return out
}

// TestMLPEnsembleMatchesMLP: the sample ensemble (preprocess -> mlp) gives
// what mlp gives on x/255, alone and under concurrent traffic, and its
// steps go through the step models' schedulers (their statistics count
// the ensemble's steps beside direct requests).
func TestMLPEnsembleMatchesMLP(t *testing.T) {
	m := startWorker(t)
	ctx := t.Context()

	check := func(batch, seed int) error {
		img := image(batch, seed)
		resp, err := m.Infer(ctx, &infer.Request{Model: "mlp_ensemble", Inputs: []tensor.Tensor{
			{Name: "IMAGE", DataType: tensor.Uint8, Shape: []int64{int64(batch), 256}, Data: img},
		}})
		if err != nil {
			return err
		}
		direct, err := m.Infer(ctx, &infer.Request{Model: "mlp", Inputs: []tensor.Tensor{
			{Name: "input", DataType: tensor.FP32, Shape: []int64{int64(batch), 256}, Data: scaled(img)},
		}})
		if err != nil {
			return err
		}
		got, want := resp.Outputs[0], direct.Outputs[0]
		if got.Name != "probabilities" || got.DataType != tensor.FP32 || len(got.Shape) != 2 || got.Shape[0] != int64(batch) || got.Shape[1] != 10 {
			t.Errorf("ensemble output %s %s %v", got.Name, got.DataType, got.Shape)
		}
		g, w := floats(got.Data), floats(want.Data)
		for i := range w {
			if math.Abs(float64(g[i]-w[i])) > 1e-5 {
				t.Errorf("batch %d seed %d: probabilities[%d] = %v, mlp on x/255 gives %v", batch, seed, i, g[i], w[i])
				break
			}
		}
		return nil
	}
	if err := check(3, 1); err != nil {
		t.Fatal(err)
	}

	const clients = 16
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- check(1, c+2)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	stat := func(name string) (success, inferences uint64) {
		st, err := m.ModelStatistics(ctx, name, "")
		if err != nil {
			t.Fatal(err)
		}
		return st[0].InferenceStats.Success.Count, st[0].InferenceCount
	}
	if n, inf := stat("mlp_ensemble"); n != clients+1 || inf != clients+3 {
		t.Errorf("mlp_ensemble: %d requests, %d inferences; want %d, %d", n, inf, clients+1, clients+3)
	}
	// mlp served the ensemble's step and the direct request of each check.
	if n, _ := stat("mlp"); n != 2*(clients+1) {
		t.Errorf("mlp served %d requests, want %d", n, 2*(clients+1))
	}
	if n, _ := stat("preprocess"); n != clients+1 {
		t.Errorf("preprocess served %d requests, want %d", n, clients+1)
	}

	// A request the ensemble's own config refuses names the ensemble.
	_, err := m.Infer(ctx, &infer.Request{Model: "mlp_ensemble", Inputs: []tensor.Tensor{
		{Name: "IMAGE", DataType: tensor.FP32, Shape: []int64{1, 256}, Data: make([]byte, 4*256)},
	}})
	if infer.CodeOf(err) != infer.CodeInvalidArgument || err == nil ||
		err.Error() != "inference input 'IMAGE' data-type is 'FP32', but model 'mlp_ensemble' expects 'UINT8'" {
		t.Errorf("err = %v", err)
	}
}
