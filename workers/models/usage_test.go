package models

import (
	"testing"

	"github.com/helixflow/helixflow/workers/tensor"
)

// TestInferFillsUsage: Infer hands the scheduler's usage (rows answered)
// back on the request for the front ends' usage counting; a failed
// request answers no rows.
func TestInferFillsUsage(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	m := newManager(t, root, ModeNone, &fakeBackend{})

	req := simpleRequest("simple")
	if _, err := m.Infer(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if req.Usage.Rows != 1 || req.Usage.Compute < 0 {
		t.Errorf("usage %+v, want 1 row", req.Usage)
	}
	bad := simpleRequest("simple")
	bad.Inputs[1] = tensor.Tensor{Name: "INPUT1", DataType: tensor.Int32, Shape: []int64{2, 4}, Data: int32s(1, 1, 1, 1, 1, 1, 1, 1)}
	if _, err := m.Infer(t.Context(), bad); err == nil {
		t.Fatal("mismatched batch sizes accepted")
	}
	if bad.Usage.Rows != 0 {
		t.Errorf("failed request answered %d rows", bad.Usage.Rows)
	}
}
