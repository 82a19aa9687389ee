package models

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/repeat"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

const repeatConfig = `
name: "repeat_int32"
backend: "repeat"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [
  { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] },
  { name: "DELAY" data_type: TYPE_UINT32 dims: [ -1 ] },
  { name: "WAIT" data_type: TYPE_UINT32 dims: [ 1 ] }
]
output [
  { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "IDX" data_type: TYPE_UINT32 dims: [ 1 ] }
]
`

// newStreamManager serves root with the fake ONNX backend and the real
// repeat backend, every model loaded at start.
func newStreamManager(t *testing.T, root string) *Manager {
	t.Helper()
	be := &fakeBackend{}
	m, err := New(Config{
		Repository: root, ControlMode: ModeNone,
		Backends: map[string]backend.Backend{"onnxruntime": be, repeat.Name: repeat.New()},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return m
}

// writeRepeat writes the repeat_int32 model: a config and an empty
// version folder (the backend reads no file).
func writeRepeat(t *testing.T, root, config string) {
	t.Helper()
	dir := filepath.Join(root, "repeat_int32")
	if err := os.MkdirAll(filepath.Join(dir, "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.pbtxt"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
}

func uint32s(vals ...uint32) []byte {
	out := make([]byte, 0, 4*len(vals))
	for _, v := range vals {
		out = binary.LittleEndian.AppendUint32(out, v)
	}
	return out
}

func repeatRequest(wait uint32, delay uint32, in ...int32) *infer.Request {
	delays := make([]uint32, len(in))
	for i := range delays {
		delays[i] = delay
	}
	n := int64(len(in))
	return &infer.Request{Model: "repeat_int32", ID: "r1", Inputs: []tensor.Tensor{
		{Name: "IN", DataType: tensor.Int32, Shape: []int64{n}, Data: int32s(in...)},
		{Name: "DELAY", DataType: tensor.Uint32, Shape: []int64{n}, Data: uint32s(delays...)},
		{Name: "WAIT", DataType: tensor.Uint32, Shape: []int64{1}, Data: uint32s(wait)},
	}}
}

type streamed struct {
	resp  *infer.Response
	final bool
}

func TestInferStreamDecoupled(t *testing.T) {
	root := t.TempDir()
	writeRepeat(t, root, repeatConfig)
	writeModel(t, root, "simple", simpleConfig, 1)
	m := newStreamManager(t, root)
	ctx := t.Context()

	var got []streamed
	req := repeatRequest(0, 0, 100, 101, 102)
	err := m.InferStream(ctx, req, func(resp *infer.Response, final bool) error {
		got = append(got, streamed{resp, final})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("%d responses, want 3 and an empty final one", len(got))
	}
	for i, s := range got[:3] {
		if s.final || s.resp.ID != "r1" || s.resp.Version != "1" || len(s.resp.Outputs) != 2 ||
			s.resp.Outputs[0].Name != "OUT" || string(s.resp.Outputs[0].Data) != string(int32s(int32(100+i))) ||
			string(s.resp.Outputs[1].Data) != string(uint32s(uint32(i))) {
			t.Errorf("response %d = %+v final %v", i, s.resp, s.final)
		}
	}
	if last := got[3]; !last.final || len(last.resp.Outputs) != 0 || last.resp.Model != "repeat_int32" {
		t.Errorf("last response %+v final %v, want an empty final one", last.resp, last.final)
	}
	if req.Usage.Rows != 1 {
		t.Errorf("usage %+v, want 1 row", req.Usage)
	}
	st, err := m.ModelStatistics(ctx, "repeat_int32", "")
	if err != nil || st[0].InferenceCount != 1 || st[0].ExecutionCount != 1 || st[0].InferenceStats.Success.Count != 1 {
		t.Errorf("statistics %v, %v", st, err)
	}

	// Unary inference refuses it with Triton's message.
	_, err = m.Infer(ctx, repeatRequest(0, 0, 1))
	if infer.CodeOf(err) != infer.CodeUnimplemented || !strings.Contains(err.Error(), "ModelInfer RPC doesn't support models with decoupled transaction policy") {
		t.Errorf("Infer on a decoupled model: %v", err)
	}

	// A model that is not decoupled answers once, final.
	got = nil
	if err := m.InferStream(ctx, simpleRequest("simple"), func(resp *infer.Response, final bool) error {
		got = append(got, streamed{resp, final})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].final || len(got[0].resp.Outputs) != 2 {
		t.Errorf("non-decoupled stream = %+v", got)
	}

	// Bad input is refused before anything runs.
	bad := repeatRequest(0, 0, 1)
	bad.Inputs[2].Shape = []int64{2}
	bad.Inputs[2].Data = uint32s(1, 2)
	err = m.InferStream(ctx, bad, func(*infer.Response, bool) error { t.Error("send called"); return nil })
	if infer.CodeOf(err) != infer.CodeInvalidArgument || !strings.Contains(err.Error(), "WAIT") {
		t.Errorf("bad WAIT shape: %v", err)
	}
	if err := m.InferStream(ctx, &infer.Request{Model: "nope"}, nil); infer.CodeOf(err) != infer.CodeNotFound {
		t.Errorf("unknown model: %v", err)
	}
}

// TestInferStreamClientGone checks that an error from send, and a
// cancelled context, end a decoupled request at once.
func TestInferStreamClientGone(t *testing.T) {
	root := t.TempDir()
	writeRepeat(t, root, repeatConfig)
	m := newStreamManager(t, root)

	gone := errors.New("client gone")
	n := 0
	start := time.Now()
	err := m.InferStream(t.Context(), repeatRequest(60_000, 0, 1, 2, 3), func(*infer.Response, bool) error {
		n++
		return gone
	})
	if !errors.Is(err, gone) || n != 1 || time.Since(start) > 10*time.Second {
		t.Errorf("err %v after %d responses and %v, want the send error after 1", err, n, time.Since(start))
	}

	ctx, cancel := context.WithCancel(t.Context())
	start = time.Now()
	err = m.InferStream(ctx, repeatRequest(60_000, 0, 1), func(_ *infer.Response, final bool) error {
		if !final {
			cancel() // the client leaves during the model's final wait
		}
		return nil
	})
	if infer.CodeOf(err) != infer.CodeCancelled || time.Since(start) > 10*time.Second {
		t.Errorf("err %v after %v, want CANCELLED at once", err, time.Since(start))
	}
	// The instance is free again.
	if err := m.InferStream(t.Context(), repeatRequest(0, 0, 5), func(*infer.Response, bool) error { return nil }); err != nil {
		t.Errorf("after a cancelled request: %v", err)
	}
}

// TestDecoupledNeedsCapableBackend checks that a decoupled model on a
// backend that answers once per request is refused at load, by name.
func TestDecoupledNeedsCapableBackend(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig+"model_transaction_policy { decoupled: true }\n", 1)
	writeRepeat(t, root, strings.Replace(repeatConfig, "model_transaction_policy { decoupled: true }", "", 1))
	m := newStreamManager(t, root)
	idx, err := m.RepositoryIndex(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, e := range idx {
		reasons[e.Name] = e.Reason
	}
	if r := reasons["simple"]; !strings.Contains(r, "cannot serve decoupled models") || !strings.Contains(r, "onnxruntime") {
		t.Errorf("simple: reason %q", r)
	}
	if r := reasons["repeat_int32"]; !strings.Contains(r, "decoupled") {
		t.Errorf("repeat_int32 without decoupled: reason %q", r)
	}
}
