package lower

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/plan"
)

func compile(t *testing.T, name string, opts Options, maxBatch int64) *Model {
	t.Helper()
	g, err := graph.Load(filepath.Join("..", "testdata", name+".onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Fold(); err != nil {
		t.Fatal(err)
	}
	m, err := Compile(g, opts, maxBatch)
	if err != nil {
		t.Fatalf("Compile(%s): %v", name, err)
	}
	return m
}

// stepKinds summarizes a program: "gemm" or the kernel family per step.
func stepKinds(p *Program) []string {
	var out []string
	for _, s := range p.Steps {
		if s.Gemm != nil {
			out = append(out, "gemm")
			continue
		}
		name := s.Launch.Kernel
		out = append(out, name[:strings.LastIndex(name, "_")])
	}
	return out
}

func TestLowering(t *testing.T) {
	tests := []struct {
		model string
		opts  Options
		// steps at batch 4
		steps string
	}{
		// Bias and Relu fuse into one elementwise kernel after each GEMM.
		{"mlp_tiny", Options{}, "gemm ew gemm ew gemm ew softmax_rows"},
		// Input cast to float16 and output cast back.
		{"mlp_tiny", Options{Precision: FP16}, "ew gemm ew gemm ew gemm ew softmax_rows ew"},
		// Convolutions: im2col + GEMM, the 1x1 one a GEMM alone; BatchNorm
		// folded, bias+Relu fused.
		{"cnn_tiny", Options{}, "im2col gemm ew maxpool im2col gemm ew gemm ew avgpool im2col gemm ew rowmean gemm ew softmax_rows"},
		{"simple_int", Options{}, "ew ew"},
	}
	for _, tt := range tests {
		t.Run(tt.model+"/"+string(tt.opts.Precision), func(t *testing.T) {
			m := compile(t, tt.model, tt.opts, 8)
			if len(m.Programs) != 8 {
				t.Fatalf("%d programs, want one per batch size 1..8", len(m.Programs))
			}
			p, err := m.Program(4)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(stepKinds(p), " "); got != tt.steps {
				t.Errorf("steps:\n got %s\nwant %s", got, tt.steps)
			}
			for b, p := range m.Programs {
				if err := plan.Check(p.Buffers, p.Offsets, p.ArenaBytes); err != nil {
					t.Errorf("batch %d: %v", b, err)
				}
			}
			if _, err := m.Program(9); err == nil {
				t.Error("a program for batch 9 of a model planned up to 8")
			}
			if src := m.Source(); !strings.Contains(src, "extern \"C\" __global__") {
				t.Error("no kernel source")
			}
		})
	}
}

// TestEncoderLowering checks the transformer: the Q/K/V heads are strided
// copies, attention uses batched GEMMs (one per batch*heads), the shape
// computations never reach the device, and the arena is reused.
func TestEncoderLowering(t *testing.T) {
	m := compile(t, "encoder_tiny", Options{}, 16)
	p, _ := m.Program(16)
	kinds := stepKinds(p)
	count := map[string]int{}
	for _, k := range kinds {
		count[k]++
	}
	if count["softmax_rows"] != 1 || count["layernorm"] != 3 || count["gather1"]+count["gather4"] != 2 {
		t.Errorf("unexpected steps %v", count)
	}
	var batched int
	for _, s := range p.Steps {
		if s.Gemm != nil && s.Gemm.Batch > 1 {
			batched++
			if s.Gemm.Batch != 16*2 {
				t.Errorf("%s: batch %d, want 32 (batch x heads)", s.Node, s.Gemm.Batch)
			}
		}
	}
	if batched != 2 {
		t.Errorf("%d batched GEMMs, want 2 (scores and context)", batched)
	}
	var sum int64
	for _, b := range p.Buffers {
		sum += b.Size
	}
	if p.ArenaBytes >= sum {
		t.Errorf("arena %d bytes reuses nothing (buffers total %d)", p.ArenaBytes, sum)
	}
	if len(p.Outputs) != 2 || p.Outputs[0].Bytes != 16*16*4 || p.Outputs[1].Bytes != 16*3*4 {
		t.Errorf("outputs %+v", p.Outputs)
	}
}

// TestArenaGrowsWithBatch: the arena of a larger batch is never smaller,
// and the model's arena is the largest.
func TestArenaGrowsWithBatch(t *testing.T) {
	m := compile(t, "cnn_tiny", Options{}, 32)
	if m.ArenaBytes() != m.Programs[32].ArenaBytes {
		t.Errorf("model arena %d, batch 32 needs %d", m.ArenaBytes(), m.Programs[32].ArenaBytes)
	}
	if m.Programs[1].ArenaBytes >= m.Programs[32].ArenaBytes {
		t.Errorf("batch 1 arena %d >= batch 32 arena %d", m.Programs[1].ArenaBytes, m.Programs[32].ArenaBytes)
	}
}

// TestConvChunks: a workspace smaller than the batch's columns splits the
// convolution into chunks of images.
func TestConvChunks(t *testing.T) {
	m := compile(t, "cnn_tiny", Options{WorkspaceBytes: 3 * 27 * 64 * 4}, 8)
	p, _ := m.Program(8)
	first := p.Steps[0].Launch
	if first == nil || !strings.HasPrefix(first.Kernel, "im2col") || first.Args[2].I != 3 {
		t.Fatalf("first step %+v, want im2col of 3 images", p.Steps[0])
	}
	var im2cols int
	for _, s := range p.Steps {
		if s.Launch != nil && strings.HasPrefix(s.Launch.Kernel, "im2col") && s.Node == "conv1::im2col" {
			im2cols++
		}
	}
	if im2cols != 3 {
		t.Errorf("conv1 unfolded in %d chunks, want 3 (8 images, 3 per chunk)", im2cols)
	}
}

func TestCompileRefuses(t *testing.T) {
	g, err := graph.Load(filepath.Join("..", "testdata", "mlp_tiny.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	g.Inputs[0].Shape = []int64{-1, -1}
	if _, err := Compile(g, Options{}, 4); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "but the batch must be fixed") {
		t.Errorf("free non-batch dimension: %v", err)
	}
	g.Inputs[0].Shape = []int64{4, 16}
	if _, err := Compile(g, Options{}, 4); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "no free batch dimension") {
		t.Errorf("batched model without a batch dimension: %v", err)
	}
	if _, err := ParsePrecision("fp8"); err == nil {
		t.Error("precision fp8 accepted")
	}
}
