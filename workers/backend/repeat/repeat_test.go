package repeat

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

func u32s(name string, dt tensor.DataType, vals ...uint32) tensor.Tensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return tensor.Tensor{Name: name, DataType: dt, Shape: []int64{int64(len(vals))}, Data: b}
}

func newInstance(t *testing.T) *Instance {
	t.Helper()
	inst, err := New().NewInstance(t.Context(), backend.InstanceSpec{ModelName: "repeat_int32", Device: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	return inst.(*Instance)
}

type response struct {
	out, idx uint32
	at       time.Duration
}

func TestRepeatSendsEachElement(t *testing.T) {
	inst := newInstance(t)
	start := time.Now()
	var got []response
	err := inst.ExecuteDecoupled(t.Context(),
		[]tensor.Tensor{u32s("IN", tensor.Int32, 100, 101, 102), u32s("DELAY", tensor.Uint32, 0, 20, 0), u32s("WAIT", tensor.Uint32, 30)},
		[]string{"OUT", "IDX"},
		func(outs []tensor.Tensor) error {
			if len(outs) != 2 || outs[0].Name != "OUT" || outs[1].Name != "IDX" || outs[0].DataType != tensor.Int32 || outs[1].DataType != tensor.Uint32 {
				t.Fatalf("outputs %+v", outs)
			}
			got = append(got, response{binary.LittleEndian.Uint32(outs[0].Data), binary.LittleEndian.Uint32(outs[1].Data), time.Since(start)})
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if total := time.Since(start); total < 50*time.Millisecond {
		t.Errorf("finished after %v, want >= DELAY + WAIT = 50ms", total)
	}
	if len(got) != 3 {
		t.Fatalf("%d responses, want 3", len(got))
	}
	for i, r := range got {
		if r.out != uint32(100+i) || r.idx != uint32(i) {
			t.Errorf("response %d = %+v", i, r)
		}
	}
	if got[1].at < 20*time.Millisecond {
		t.Errorf("second response after %v, want >= its 20ms delay", got[1].at)
	}
}

func TestRepeatOnlyAskedOutputs(t *testing.T) {
	inst := newInstance(t)
	n := 0
	err := inst.ExecuteDecoupled(t.Context(),
		[]tensor.Tensor{u32s("IN", tensor.Int32, 7), u32s("DELAY", tensor.Uint32, 0), u32s("WAIT", tensor.Uint32, 0)},
		[]string{"IDX"},
		func(outs []tensor.Tensor) error {
			n++
			if len(outs) != 1 || outs[0].Name != "IDX" {
				t.Errorf("outputs %+v, want IDX only", outs)
			}
			return nil
		})
	if err != nil || n != 1 {
		t.Fatalf("err %v, %d responses", err, n)
	}
}

func TestRepeatEmptyInputSendsNothing(t *testing.T) {
	inst := newInstance(t)
	err := inst.ExecuteDecoupled(t.Context(),
		[]tensor.Tensor{u32s("IN", tensor.Int32), u32s("DELAY", tensor.Uint32), u32s("WAIT", tensor.Uint32, 0)},
		nil, func([]tensor.Tensor) error { t.Error("send called"); return nil })
	if err != nil {
		t.Fatal(err)
	}
}

func TestRepeatBadInputs(t *testing.T) {
	in := u32s("IN", tensor.Int32, 1, 2)
	delay := u32s("DELAY", tensor.Uint32, 0, 0)
	wait := u32s("WAIT", tensor.Uint32, 0)
	tests := []struct {
		name    string
		inputs  []tensor.Tensor
		outputs []string
		want    string
	}{
		{"missing WAIT", []tensor.Tensor{in, delay}, nil, "needs input 'WAIT'"},
		{"DELAY length", []tensor.Tensor{in, u32s("DELAY", tensor.Uint32, 0), wait}, nil, "same number of elements, got 2 and 1"},
		{"WAIT length", []tensor.Tensor{in, delay, u32s("WAIT", tensor.Uint32, 1, 2)}, nil, "'WAIT' to have one element, got 2"},
		{"IN type", []tensor.Tensor{u32s("IN", tensor.Uint32, 1, 2), delay, wait}, nil, "'IN' has datatype UINT32, expected INT32"},
		{"unknown output", []tensor.Tensor{in, delay, wait}, []string{"NOPE"}, "no output 'NOPE'"},
	}
	inst := newInstance(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := inst.ExecuteDecoupled(t.Context(), tt.inputs, tt.outputs, func([]tensor.Tensor) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "repeat_int32") {
				t.Errorf("error %v, want one naming the model and %q", err, tt.want)
			}
		})
	}
}

// TestRepeatStopsOnCancel checks that a cancelled context ends the delays
// and the final wait at once, and that a send error ends the request.
func TestRepeatStopsOnCancel(t *testing.T) {
	inst := newInstance(t)
	ctx, cancel := context.WithCancel(t.Context())
	start := time.Now()
	err := inst.ExecuteDecoupled(ctx,
		[]tensor.Tensor{u32s("IN", tensor.Int32, 1, 2), u32s("DELAY", tensor.Uint32, 0, 0), u32s("WAIT", tensor.Uint32, 60_000)},
		nil, func([]tensor.Tensor) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Errorf("err %v after %v, want context.Canceled at once", err, time.Since(start))
	}
	gone := errors.New("client gone")
	n := 0
	err = inst.ExecuteDecoupled(t.Context(),
		[]tensor.Tensor{u32s("IN", tensor.Int32, 1, 2), u32s("DELAY", tensor.Uint32, 0, 0), u32s("WAIT", tensor.Uint32, 0)},
		nil, func([]tensor.Tensor) error { n++; return gone })
	if !errors.Is(err, gone) || n != 1 {
		t.Errorf("err %v after %d sends, want the send error after 1", err, n)
	}
}

func TestRepeatInspectAndSpec(t *testing.T) {
	b := New()
	ins, outs, err := b.Inspect(t.Context(), "/nonexistent/model.onnx")
	if err != nil || len(ins) != 3 || len(outs) != 2 || ins[0].Name != "IN" || outs[1].Name != "IDX" {
		t.Fatalf("Inspect = %v, %v, %v", ins, outs, err)
	}
	ins[0].Shape[0] = 5 // callers may change what they got
	if again, _, _ := b.Inspect(t.Context(), ""); again[0].Shape[0] != -1 {
		t.Error("Inspect shares its shapes")
	}
	if _, err := b.NewInstance(t.Context(), backend.InstanceSpec{ModelName: "r", MaxBatchSize: 4}); !errors.Is(err, backend.ErrUnsupported) {
		t.Errorf("max_batch_size 4: %v, want ErrUnsupported", err)
	}
	if _, err := newInstance(t).Execute(t.Context(), nil, nil); err == nil || !strings.Contains(err.Error(), "decoupled") {
		t.Errorf("Execute: %v, want a decoupled error", err)
	}
}
