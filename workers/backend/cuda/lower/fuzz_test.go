package lower

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
)

// FuzzCompile feeds mutated model files through parsing, folding, shape
// inference and lowering: a bad model must be refused with an error, never
// crash the worker.
func FuzzCompile(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "*.onnx"))
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := graph.Parse(data, "")
		if err != nil {
			return
		}
		if err := g.Fold(); err != nil {
			return
		}
		for _, in := range g.Inputs {
			for i, d := range in.Shape {
				if i > 0 && (d < 0 || d > 64) {
					in.Shape[i] = 3
				}
			}
		}
		for _, p := range []Precision{FP32, FP16} {
			_, _ = Compile(g, Options{Precision: p, WorkspaceBytes: 1 << 12}, 2)
		}
	})
}
