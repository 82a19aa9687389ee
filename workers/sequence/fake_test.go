package sequence

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/tensor"
)

// accumulator is a backend.Instance for tests with the semantics of
// Triton's sample sequence models: per row, OUTPUT = (INPUT + START +
// END*CORRID + INPUT_STATE) * READY and OUTPUT_STATE = OUTPUT, for the
// controls and state it is given (INT32 INPUT and state; controls of any
// supported type). It records every execution's control values. With gate
// set, every Execute first takes a token from gate.
type accumulator struct {
	gate chan struct{}
	fail error

	mu      sync.Mutex
	calls   []execution
	running int
	overlap bool
	closed  int
}

// execution is what one Execute saw: rows and each control's values.
type execution struct {
	rows     int
	controls map[string][]float64
	corrids  []string
	inputs   []int32
}

var _ backend.Instance = (*accumulator)(nil)

func (a *accumulator) Execute(ctx context.Context, inputs []tensor.Tensor, outputs []string) ([]tensor.Tensor, error) {
	a.mu.Lock()
	a.running++
	a.overlap = a.overlap || a.running > 1
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running--
		a.mu.Unlock()
	}()
	if a.gate != nil {
		select {
		case <-a.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if a.fail != nil {
		return nil, a.fail
	}
	byName := map[string]tensor.Tensor{}
	for _, t := range inputs {
		byName[t.Name] = t
	}
	in, ok := byName["INPUT"]
	if !ok {
		return nil, fmt.Errorf("no INPUT")
	}
	x := int32s(in.Data)
	rows := len(x)
	ex := execution{rows: rows, controls: map[string][]float64{}, inputs: x}
	value := func(name string, i int) float64 {
		t, ok := byName[name]
		if !ok {
			return 0
		}
		v := controlValues(t)
		ex.controls[name] = v
		return v[i]
	}
	out := make([]int32, rows)
	var corrids []string
	if t, ok := byName["CORRID"]; ok {
		corrids = corridStrings(t)
		ex.corrids = corrids
	}
	var state []int32
	if t, ok := byName["INPUT_STATE"]; ok {
		state = int32s(t.Data)
	}
	for i := range rows {
		v := float64(x[i]) + value("START", i)
		if corrids != nil {
			c, _ := strconv.ParseFloat(corrids[i], 64)
			v += value("END", i) * c
		} else {
			value("END", i)
		}
		if state != nil {
			v += float64(state[i])
		}
		if _, ok := byName["READY"]; ok {
			v *= value("READY", i)
		}
		out[i] = int32(v)
	}
	a.mu.Lock()
	a.calls = append(a.calls, ex)
	a.mu.Unlock()
	var res []tensor.Tensor
	for _, name := range outputs {
		switch name {
		case "OUTPUT", "OUTPUT_STATE":
			res = append(res, tensor.Tensor{Name: name, DataType: tensor.Int32, Shape: slices.Clone(in.Shape), Data: int32Bytes(out...)})
		default:
			return nil, fmt.Errorf("no output %q", name)
		}
	}
	return res, nil
}

func (a *accumulator) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed++
	return nil
}

func (a *accumulator) executions() []execution {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

func controlValues(t tensor.Tensor) []float64 {
	var out []float64
	switch t.DataType {
	case tensor.Int32:
		for _, v := range int32s(t.Data) {
			out = append(out, float64(v))
		}
	case tensor.FP32:
		for i := 0; i < len(t.Data); i += 4 {
			out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[i:]))))
		}
	case tensor.Bool:
		for _, b := range t.Data {
			out = append(out, float64(b))
		}
	}
	return out
}

func corridStrings(t tensor.Tensor) []string {
	n, _ := tensor.ElementCount(t.Shape)
	var out []string
	switch t.DataType {
	case tensor.Bytes:
		elems, _ := tensor.DecodeBytes(t.Data, n)
		for _, e := range elems {
			out = append(out, string(e))
		}
	case tensor.Uint64, tensor.Int64:
		for i := 0; i < len(t.Data); i += 8 {
			out = append(out, strconv.FormatUint(binary.LittleEndian.Uint64(t.Data[i:]), 10))
		}
	case tensor.Uint32, tensor.Int32:
		for i := 0; i < len(t.Data); i += 4 {
			out = append(out, strconv.FormatUint(uint64(binary.LittleEndian.Uint32(t.Data[i:])), 10))
		}
	}
	return out
}

func int32s(b []byte) []int32 {
	out := make([]int32, len(b)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func int32Bytes(v ...int32) []byte {
	out := make([]byte, 0, 4*len(v))
	for _, x := range v {
		out = binary.LittleEndian.AppendUint32(out, uint32(x))
	}
	return out
}

// int32Control is a boolean control with int32_false_true [0, 1].
func int32Control(name string, kind ControlKind) Control {
	return Control{Input: name, Kind: kind, DataType: tensor.Int32, False: int32Bytes(0), True: int32Bytes(1)}
}

// start starts a Batcher over cfg's instances (accumulators when none),
// closed when the test ends.
func start(t *testing.T, cfg Config) *Batcher {
	t.Helper()
	if cfg.Model == "" {
		cfg.Model = "seq"
	}
	if len(cfg.Instances) == 0 {
		cfg.Instances = []backend.Instance{&accumulator{}}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// step is one request of a sequence: INPUT value and flags.
func step(id infer.CorrelationID, value int32, start, end bool, batched bool) *scheduler.Request {
	shape := []int64{1}
	if batched {
		shape = []int64{1, 1}
	}
	return &scheduler.Request{
		Inputs:   []tensor.Tensor{{Name: "INPUT", DataType: tensor.Int32, Shape: shape, Data: int32Bytes(value)}},
		Outputs:  []string{"OUTPUT"},
		Sequence: infer.Sequence{ID: id, Start: start, End: end},
	}
}

// do runs r and returns its single INT32 output value.
func do(t *testing.T, b *Batcher, r *scheduler.Request) (int32, error) {
	t.Helper()
	outs, err := b.Do(context.Background(), r)
	if err != nil {
		return 0, err
	}
	if len(outs) != 1 || outs[0].Name != "OUTPUT" && outs[0].Name != "" {
		return 0, fmt.Errorf("outputs %v", outs)
	}
	return int32s(outs[0].Data)[0], nil
}

func num(n uint64) infer.CorrelationID { return infer.CorrelationID{Num: n} }
func str(s string) infer.CorrelationID { return infer.CorrelationID{Str: s} }

// statsRecorder is a scheduler.Observer that keeps what it is told.
type statsRecorder struct {
	mu       sync.Mutex
	requests []scheduler.RequestStats
	execs    []scheduler.ExecutionStats
	pending  int
}

func (r *statsRecorder) RequestDone(s scheduler.RequestStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, s)
}

func (r *statsRecorder) ExecutionDone(e scheduler.ExecutionStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execs = append(r.execs, e)
}

func (r *statsRecorder) PendingChanged(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = n
}
