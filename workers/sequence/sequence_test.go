package sequence

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/tensor"
)

// runSequence sends values as one sequence (START on the first, END on
// the last) and returns the outputs.
func runSequence(t *testing.T, b *Batcher, id infer.CorrelationID, values []int32, batched bool) []int32 {
	t.Helper()
	var out []int32
	for i, v := range values {
		got, err := do(t, b, step(id, v, i == 0, i == len(values)-1, batched))
		if err != nil {
			t.Fatalf("sequence %s step %d: %v", id, i, err)
		}
		out = append(out, got)
	}
	return out
}

// TestSampleModels runs Triton's example clients' sequences against the
// semantics of the three sample models.
func TestSampleModels(t *testing.T) {
	values := []int32{0, 11, 7, 5, 3, 2, 0, 1}
	tests := []struct {
		name string
		cfg  Config
		id   infer.CorrelationID
		want []int32
	}{
		{"direct START READY (simple_sequence)", Config{MaxBatchSize: 8, Strategy: Direct,
			Controls: []Control{int32Control("START", ControlStart), int32Control("READY", ControlReady)}},
			num(1000), []int32{1, 11, 7, 5, 3, 2, 0, 1}},
		{"direct with a string id", Config{MaxBatchSize: 8, Strategy: Direct,
			Controls: []Control{int32Control("START", ControlStart), int32Control("READY", ControlReady)}},
			str("5c0a4b64-1d2e-4a4f-9f57-1c1f2f0e8a11"), []int32{1, 11, 7, 5, 3, 2, 0, 1}},
		{"oldest START END READY CORRID uint64 (simple_dyna_sequence)", Config{MaxBatchSize: 8, Strategy: Oldest, MaxCandidates: 4,
			Controls: []Control{int32Control("START", ControlStart), int32Control("END", ControlEnd),
				int32Control("READY", ControlReady), {Input: "CORRID", Kind: ControlCorrID, DataType: tensor.Uint64}}},
			num(1000), []int32{1, 11, 7, 5, 3, 2, 0, 1001}},
		{"oldest with implicit state and a string CORRID (simple_string_dyna_sequence)", Config{MaxBatchSize: 8, Strategy: Oldest,
			Controls: []Control{int32Control("END", ControlEnd), int32Control("READY", ControlReady),
				{Input: "CORRID", Kind: ControlCorrID, DataType: tensor.Bytes}},
			States: []State{{Input: "INPUT_STATE", Output: "OUTPUT_STATE", DataType: tensor.Int32, Shape: []int64{1}}}},
			str("1002"), []int32{0, 11, 18, 23, 26, 28, 28, 1002 + 29}},
		{"state with a numeric id into a string CORRID", Config{MaxBatchSize: 8, Strategy: Direct,
			Controls: []Control{int32Control("END", ControlEnd), {Input: "CORRID", Kind: ControlCorrID, DataType: tensor.Bytes}},
			States:   []State{{Input: "INPUT_STATE", Output: "OUTPUT_STATE", DataType: tensor.Int32, Shape: []int64{1}, Data: int32Bytes(100)}}},
			num(7), []int32{100, 111, 118, 123, 126, 128, 128, 7 + 129}},
		{"max_batch_size 0", Config{MaxBatchSize: 0, Strategy: Oldest,
			Controls: []Control{int32Control("START", ControlStart), int32Control("END", ControlEnd),
				{Input: "CORRID", Kind: ControlCorrID, DataType: tensor.Int32}}},
			num(3), []int32{1, 11, 7, 5, 3, 2, 0, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := &statsRecorder{}
			tt.cfg.Observer = obs
			inst := &accumulator{}
			tt.cfg.Instances = []backend.Instance{inst}
			b := start(t, tt.cfg)
			got := runSequence(t, b, tt.id, values, tt.cfg.MaxBatchSize > 0)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("outputs %v, want %v", got, tt.want)
			}
			// The sequence ended: it holds no slot, and a new request
			// without START is refused.
			if n := b.Sequences(); n != 0 {
				t.Errorf("%d sequences tracked after END", n)
			}
			for _, ex := range inst.executions() {
				if tt.cfg.MaxBatchSize == 0 && ex.rows != 1 {
					t.Errorf("max_batch_size 0 execution has %d rows", ex.rows)
				}
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if len(obs.requests) != len(values) || len(obs.execs) != len(values) {
				t.Errorf("observer saw %d requests, %d executions", len(obs.requests), len(obs.execs))
			}
			for _, r := range obs.requests {
				if !r.Success || r.BatchSize != 1 {
					t.Errorf("request stats %+v", r)
				}
			}
		})
	}
}

// TestControlEncodings: each control gets its false_true values, of its
// type, in every row; padding rows get false (READY false).
func TestControlEncodings(t *testing.T) {
	f32 := func(v float32) []byte { return binary.LittleEndian.AppendUint32(nil, math.Float32bits(v)) }
	inst := &accumulator{}
	b := start(t, Config{MaxBatchSize: 4, Strategy: Direct, Instances: []backend.Instance{inst},
		Controls: []Control{
			{Input: "START", Kind: ControlStart, DataType: tensor.FP32, False: f32(0), True: f32(1)},
			{Input: "END", Kind: ControlEnd, DataType: tensor.Bool, False: []byte{0}, True: []byte{1}},
			{Input: "READY", Kind: ControlReady, DataType: tensor.Int32, False: int32Bytes(0), True: int32Bytes(1)},
			{Input: "CORRID", Kind: ControlCorrID, DataType: tensor.Int64},
		}})
	// Sequence 1 takes slot 0, sequence 2 slot 1: the second execution
	// has two rows, slot 0 padding.
	if _, err := do(t, b, step(num(1), 5, true, false, true)); err != nil {
		t.Fatal(err)
	}
	if got, err := do(t, b, step(num(2), 5, true, true, true)); err != nil || got != 5+1+2 {
		t.Fatalf("got %d, %v", got, err)
	}
	ex := inst.executions()
	last := ex[len(ex)-1]
	want := map[string][]float64{"START": {0, 1}, "END": {0, 1}, "READY": {0, 1}}
	if last.rows != 2 || !reflect.DeepEqual(last.controls, want) || !reflect.DeepEqual(last.corrids, []string{"0", "2"}) {
		t.Fatalf("execution %+v, want 2 rows with controls %v and CORRID [0 2]", last, want)
	}
	// Inverted false/true values are honoured.
	inst2 := &accumulator{}
	b2 := start(t, Config{MaxBatchSize: 2, Instances: []backend.Instance{inst2},
		Controls: []Control{{Input: "START", Kind: ControlStart, DataType: tensor.Int32, False: int32Bytes(7), True: int32Bytes(3)}}})
	if got, err := do(t, b2, step(num(1), 10, true, false, true)); err != nil || got != 13 {
		t.Fatalf("START true: got %d, %v", got, err)
	}
	if got, err := do(t, b2, step(num(1), 10, false, false, true)); err != nil || got != 17 {
		t.Fatalf("START false: got %d, %v", got, err)
	}
}

func TestBadRequests(t *testing.T) {
	b := start(t, Config{MaxBatchSize: 8, IdleTimeout: time.Hour,
		Controls: []Control{int32Control("START", ControlStart), {Input: "CORRID", Kind: ControlCorrID, DataType: tensor.Uint32}}})
	if _, err := do(t, b, step(num(9), 1, true, false, true)); err != nil {
		t.Fatal(err)
	}
	if _, err := do(t, b, step(num(9), 1, false, true, true)); err != nil {
		t.Fatal(err)
	}
	two := step(num(4), 1, true, false, true)
	two.Inputs[0].Shape, two.Inputs[0].Data = []int64{2, 1}, int32Bytes(1, 2)
	control := step(num(4), 1, true, false, true)
	control.Inputs = append(control.Inputs, tensor.Tensor{Name: "START", DataType: tensor.Int32, Shape: []int64{1, 1}, Data: int32Bytes(1)})
	plain := start(t, Config{MaxBatchSize: 8})
	tests := []struct {
		name string
		req  *scheduler.Request
		code infer.Code
		want string
	}{
		{"no correlation id", step(infer.CorrelationID{}, 1, false, false, true), infer.CodeInvalidArgument,
			"inference request to model 'seq' must specify a non-zero or non-empty correlation ID"},
		{"unknown id without START", step(num(42), 1, false, false, true), infer.CodeInvalidArgument,
			"inference request for sequence 42 to model 'seq' must specify the START flag on the first request of the sequence; sequence 42 is unknown to this worker"},
		{"END twice", step(num(9), 1, false, true, true), infer.CodeInvalidArgument,
			"inference request for sequence 9 to model 'seq' must specify the START flag on the first request of the sequence; sequence 9 already ended"},
		{"batch size 2", two, infer.CodeInvalidArgument, "must specify batch-size 1 due to requirements of sequence batcher"},
		{"control input sent", control, infer.CodeInvalidArgument, "input 'START' of model 'seq' is filled by the sequence batcher"},
		{"string id into a numeric CORRID", step(str("x"), 1, true, false, true), infer.CodeInvalidArgument,
			`CORRID control is UINT32, so the sequence id must be an integer, not the string "x"`},
		{"id too large for CORRID", step(num(1<<40), 1, true, false, true), infer.CodeInvalidArgument,
			"does not fit the model's UINT32 CORRID control"},
		{"decoupled", &scheduler.Request{Sequence: infer.Sequence{ID: num(1), Start: true}, Send: func([]tensor.Tensor) error { return nil }},
			infer.CodeInvalidArgument, "decoupled requests are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.Do(context.Background(), tt.req)
			if infer.CodeOf(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v (%v), want %v containing %q", err, infer.CodeOf(err), tt.code, tt.want)
			}
		})
	}
	if n := b.Sequences(); n != 0 {
		t.Fatalf("%d sequences left by bad requests", n)
	}
	_, err := plain.Do(context.Background(), step(str("abc"), 1, false, false, true))
	if want := `inference request for sequence "abc" to model 'seq' must specify the START flag on the first request of the sequence; sequence "abc" is unknown to this worker`; infer.CodeOf(err) != infer.CodeInvalidArgument || err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("string id: err = %v, want %q", err, want)
	}
}

// TestStartRestartsARunningSequence: START on an id that has not ended
// restarts it (Triton): its state goes back to the initial state.
func TestStartRestartsARunningSequence(t *testing.T) {
	b := start(t, Config{MaxBatchSize: 4, Strategy: Oldest,
		States: []State{{Input: "INPUT_STATE", Output: "OUTPUT_STATE", DataType: tensor.Int32, Shape: []int64{1}}}})
	id := str("acc")
	for i, want := range []int32{5, 10, 15} {
		if got, err := do(t, b, step(id, 5, i == 0, false, true)); err != nil || got != want {
			t.Fatalf("step %d: %d, %v; want %d", i, got, err, want)
		}
	}
	if got, err := do(t, b, step(id, 1, true, false, true)); err != nil || got != 1 {
		t.Fatalf("restart: %d, %v; want 1", got, err)
	}
	if got, err := do(t, b, step(id, 1, false, true, true)); err != nil || got != 2 {
		t.Fatalf("after restart: %d, %v; want 2", got, err)
	}
	if b.Sequences() != 0 {
		t.Fatal("sequence still tracked after END")
	}
}

// TestIdleTimeout: a sequence idle for longer than the timeout is
// released, and its next request is told so.
func TestIdleTimeout(t *testing.T) {
	b := start(t, Config{MaxBatchSize: 1, IdleTimeout: 300 * time.Millisecond})
	if _, err := do(t, b, step(num(5), 1, true, false, true)); err != nil {
		t.Fatal(err)
	}
	// Requests within the timeout keep it alive.
	for range 5 {
		time.Sleep(30 * time.Millisecond)
		if _, err := do(t, b, step(num(5), 1, false, false, true)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Sequences() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle sequence never released")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, err := do(t, b, step(num(5), 1, false, false, true))
	if infer.CodeOf(err) != infer.CodeInvalidArgument || !strings.Contains(err.Error(), "sequence 5 was released after it was idle for more than 300ms") {
		t.Fatalf("err = %v", err)
	}
	// The freed slot serves a new sequence at once.
	if _, err := do(t, b, step(num(6), 1, true, true, true)); err != nil {
		t.Fatal(err)
	}
}

// TestDirectSlots: a direct batch reaches the highest occupied slot; free
// slots are reused; sequences beyond the slots wait in the backlog until
// one ends.
func TestDirectSlots(t *testing.T) {
	inst := &accumulator{}
	b := start(t, Config{MaxBatchSize: 2, Strategy: Direct, IdleTimeout: time.Hour, Instances: []backend.Instance{inst},
		Controls: []Control{int32Control("READY", ControlReady)}})
	if _, err := do(t, b, step(num(1), 1, true, false, true)); err != nil {
		t.Fatal(err)
	}
	if _, err := do(t, b, step(num(2), 1, true, false, true)); err != nil {
		t.Fatal(err)
	}
	// Both slots are taken: sequence 3 waits until sequence 1 ends.
	done := make(chan error, 1)
	go func() {
		_, err := do(t, b, step(num(3), 1, true, false, true))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("backlogged sequence ran at once: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := do(t, b, step(num(1), 1, false, true, true)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Sequence 3 runs in slot 0 (sequence 1's): its row is the first of 2.
	ex := inst.executions()
	last := ex[len(ex)-1]
	if last.rows != 2 || !reflect.DeepEqual(last.controls["READY"], []float64{1, 0}) {
		t.Fatalf("last execution %+v, want 2 rows READY [1 0]", last)
	}
	if _, err := do(t, b, step(num(2), 1, false, true, true)); err != nil {
		t.Fatal(err)
	}
	// Slot 1 is free again: sequence 3 alone runs a batch of one.
	if _, err := do(t, b, step(num(3), 1, false, true, true)); err != nil {
		t.Fatal(err)
	}
	ex = inst.executions()
	if last := ex[len(ex)-1]; last.rows != 1 {
		t.Fatalf("last execution has %d rows, want 1", last.rows)
	}
}

// TestOldestBatchesSequences: requests of different sequences queued
// behind a running execution go in one batch, oldest first, at most one
// per sequence and at most max_batch_size.
func TestOldestBatchesSequences(t *testing.T) {
	gate := make(chan struct{})
	inst := &accumulator{gate: gate}
	obs := &statsRecorder{}
	b := start(t, Config{MaxBatchSize: 4, Strategy: Oldest, MaxCandidates: 8, Instances: []backend.Instance{inst}, Observer: obs,
		Controls: []Control{{Input: "CORRID", Kind: ControlCorrID, DataType: tensor.Uint64}}})
	t.Cleanup(func() { close(gate) })
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	send := func(id uint64, startFlag bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.Do(context.Background(), step(num(id), int32(id), startFlag, false, true))
			errs <- err
		}()
	}
	send(100, true) // holds the instance
	waitFor(t, func() bool { return b.Pending() == 0 && b.Sequences() == 1 })
	for id := uint64(1); id <= 5; id++ {
		send(id, true)
		waitFor(t, func() bool { return b.Pending() == int(id) })
	}
	send(1, false) // a second request of sequence 1 waits for the first
	waitFor(t, func() bool { return b.Pending() == 6 })
	for range 3 {
		gate <- struct{}{}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var got [][]string
	for _, ex := range inst.executions() {
		got = append(got, ex.corrids)
	}
	want := [][]string{{"100"}, {"1", "2", "3", "4"}, {"5", "1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("batches %v, want %v", got, want)
	}
}

// TestOldestMaxQueueDelay: with a delay, the batcher waits for a preferred
// batch size before running.
func TestOldestMaxQueueDelay(t *testing.T) {
	inst := &accumulator{}
	b := start(t, Config{MaxBatchSize: 4, Strategy: Oldest, MaxQueueDelay: 5 * time.Second, PreferredBatchSizes: []int{2},
		Instances: []backend.Instance{inst}})
	var wg sync.WaitGroup
	for id := uint64(1); id <= 2; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := do(t, b, step(num(id), 1, true, false, true)); err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if ex := inst.executions(); len(ex) != 1 || ex[0].rows != 2 {
		t.Fatalf("executions %+v, want one of 2 rows", ex)
	}
}

// TestDirectMinSlotUtilization: with a delay and a minimum utilization the
// batcher waits for more slots to be ready, then runs what it has.
func TestDirectMinSlotUtilization(t *testing.T) {
	inst := &accumulator{}
	b := start(t, Config{MaxBatchSize: 2, Strategy: Direct, MaxQueueDelay: 40 * time.Millisecond, MinSlotUtilization: 1,
		Instances: []backend.Instance{inst}})
	t0 := time.Now()
	if _, err := do(t, b, step(num(1), 1, true, false, true)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 40*time.Millisecond {
		t.Fatalf("ran after %v, before the 40ms delay", d)
	}
}

func TestCancelQueuedRequest(t *testing.T) {
	gate := make(chan struct{})
	inst := &accumulator{gate: gate}
	b := start(t, Config{MaxBatchSize: 1, Instances: []backend.Instance{inst}})
	t.Cleanup(func() { close(gate) })
	first := make(chan error, 1)
	go func() {
		_, err := b.Do(context.Background(), step(num(1), 1, true, false, true))
		first <- err
	}()
	waitFor(t, func() bool { return b.Pending() == 0 && b.Sequences() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() {
		_, err := b.Do(ctx, step(num(1), 2, false, false, true))
		second <- err
	}()
	waitFor(t, func() bool { return b.Pending() == 1 })
	cancel()
	if err := <-second; infer.CodeOf(err) != infer.CodeCancelled {
		t.Fatalf("cancelled request: %v", err)
	}
	if b.Pending() != 0 {
		t.Fatalf("pending %d after cancel", b.Pending())
	}
	gate <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

func TestBackendFailure(t *testing.T) {
	inst := &accumulator{fail: errors.New("boom")}
	obs := &statsRecorder{}
	b := start(t, Config{MaxBatchSize: 1, Instances: []backend.Instance{inst}, Observer: obs})
	_, err := do(t, b, step(num(1), 1, true, false, true))
	if err == nil || !strings.Contains(err.Error(), "model 'seq' version 0 failed to execute: boom") {
		t.Fatalf("err = %v", err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.requests) != 1 || obs.requests[0].FailureReason != scheduler.FailureBackend {
		t.Fatalf("stats %+v", obs.requests)
	}
}

// TestCloseFailsBackloggedSequences: Close answers sequences still
// waiting for a slot UNAVAILABLE, and later requests too.
func TestCloseFailsBackloggedSequences(t *testing.T) {
	inst := &accumulator{}
	b, err := New(Config{Model: "seq", MaxBatchSize: 1, Instances: []backend.Instance{inst}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := do(t, b, step(num(1), 1, true, false, true)); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := b.Do(context.Background(), step(num(2), 1, true, false, true))
		waiting <- err
	}()
	waitFor(t, func() bool { return b.Sequences() == 2 })
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; infer.CodeOf(err) != infer.CodeUnavailable {
		t.Fatalf("backlogged request: %v", err)
	}
	if _, err := do(t, b, step(num(1), 1, false, false, true)); infer.CodeOf(err) != infer.CodeUnavailable {
		t.Fatalf("request after Close: %v", err)
	}
	if inst.closed != 1 {
		t.Fatalf("instance closed %d times", inst.closed)
	}
}

// TestManySequencesConcurrently: many sequences at once, over two
// instances and fewer slots than sequences, each keep their own order and
// state; run with -race.
func TestManySequencesConcurrently(t *testing.T) {
	for _, strategy := range []Strategy{Direct, Oldest} {
		t.Run(fmt.Sprint(strategy), func(t *testing.T) {
			insts := []*accumulator{{}, {}}
			b := start(t, Config{MaxBatchSize: 4, Strategy: strategy, MaxCandidates: 6,
				Instances: []backend.Instance{insts[0], insts[1]},
				Controls: []Control{int32Control("START", ControlStart), int32Control("END", ControlEnd),
					int32Control("READY", ControlReady), {Input: "CORRID", Kind: ControlCorrID, DataType: tensor.Bytes}},
				States: []State{{Input: "INPUT_STATE", Output: "OUTPUT_STATE", DataType: tensor.Int32, Shape: []int64{1}}}})
			const sequences, steps = 40, 12
			var wg sync.WaitGroup
			for s := range sequences {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := str(fmt.Sprintf("%d", 1000+s))
					sum := int32(0)
					for i := range steps {
						startFlag, end := i == 0, i == steps-1
						got, err := do(t, b, step(id, int32(i+1), startFlag, end, true))
						if err != nil {
							t.Errorf("sequence %s step %d: %v", id, i, err)
							return
						}
						sum += int32(i + 1)
						want := sum
						if startFlag {
							want++
						}
						if end {
							want += int32(1000 + s)
						}
						if got != want {
							t.Errorf("sequence %s step %d: %d, want %d", id, i, got, want)
							return
						}
						if startFlag {
							sum++ // the state kept START's +1
						}
					}
				}()
			}
			wg.Wait()
			if n := b.Sequences(); n != 0 {
				t.Errorf("%d sequences left", n)
			}
			batched := 0
			for _, inst := range insts {
				if inst.overlap {
					t.Error("an instance ran two executions at once")
				}
				for _, ex := range inst.executions() {
					if ex.rows > 4 {
						t.Errorf("execution of %d rows", ex.rows)
					}
					if ex.rows > 1 {
						batched++
					}
				}
			}
			t.Logf("%d batched executions", batched)
		})
	}
}

func TestNewChecksConfig(t *testing.T) {
	inst := []backend.Instance{&accumulator{}}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no instances", Config{}, "no instances"},
		{"two START controls", Config{Instances: inst, Controls: []Control{int32Control("A", ControlStart), int32Control("B", ControlStart)}}, "more than one START control"},
		{"bad CORRID type", Config{Instances: inst, Controls: []Control{{Input: "C", Kind: ControlCorrID, DataType: tensor.FP32}}}, "CORRID control \"C\" has data type FP32"},
		{"short false/true", Config{Instances: inst, Controls: []Control{{Input: "S", Kind: ControlStart, DataType: tensor.Int32, False: []byte{0}}}}, "false/true values"},
		{"preferred too big", Config{Instances: inst, MaxBatchSize: 2, PreferredBatchSizes: []int{3}}, "preferred batch size 3"},
		{"bad initial state", Config{Instances: inst, States: []State{{Input: "S", DataType: tensor.Int32, Shape: []int64{2}, Data: []byte{1}}}}, "initial state of \"S\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func FuzzCorridValue(f *testing.F) {
	f.Add(uint64(1), "", 0)
	f.Add(uint64(0), "1002", 4)
	f.Add(uint64(math.MaxUint64), "", 1)
	types := []tensor.DataType{tensor.Uint64, tensor.Int64, tensor.Uint32, tensor.Int32, tensor.Bytes}
	f.Fuzz(func(t *testing.T, n uint64, s string, ti int) {
		dt := types[(ti%len(types)+len(types))%len(types)]
		id := infer.CorrelationID{Num: n, Str: s}
		v, err := corridValue(dt, id)
		if err != nil {
			return
		}
		el := tensor.Tensor{Name: "CORRID", DataType: dt, Shape: []int64{1}, Data: v}
		if err := el.Validate(); err != nil {
			t.Fatalf("corridValue(%s, %v) = %x: %v", dt, id, v, err)
		}
	})
}

// TestTraceSpans: a sampled request gets the queue, batch and execute
// spans, as with the dynamic batcher.
func TestTraceSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b := start(t, Config{MaxBatchSize: 2})
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := b.Do(ctx, step(num(1), 1, true, true, true)); err != nil {
		t.Fatal(err)
	}
	span.End()
	names := map[string]bool{}
	for _, s := range rec.Ended() {
		if s.Parent().SpanID() == span.SpanContext().SpanID() {
			names[s.Name()] = true
		}
	}
	for _, want := range []string{telemetry.SpanQueue, telemetry.SpanBatch, telemetry.SpanExecute} {
		if !names[want] {
			t.Errorf("no %q span (got %v)", want, names)
		}
	}
}

// TestCloseTimesOut: when Close's context ends first, queued requests fail
// UNAVAILABLE, the running execution is cancelled and Close says so.
func TestCloseTimesOut(t *testing.T) {
	inst := &accumulator{gate: make(chan struct{})}
	b, err := New(Config{Model: "seq", MaxBatchSize: 1, Instances: []backend.Instance{inst}})
	if err != nil {
		t.Fatal(err)
	}
	running := make(chan error, 1)
	go func() {
		_, err := b.Do(context.Background(), step(num(1), 1, true, false, true))
		running <- err
	}()
	waitFor(t, func() bool { return b.Pending() == 0 && b.Sequences() == 1 })
	queued := make(chan error, 1)
	go func() {
		_, err := b.Do(context.Background(), step(num(1), 2, false, false, true))
		queued <- err
	}()
	waitFor(t, func() bool { return b.Pending() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
	if err := <-queued; infer.CodeOf(err) != infer.CodeUnavailable {
		t.Fatalf("queued request: %v", err)
	}
	if err := <-running; err == nil {
		t.Fatal("the cancelled execution succeeded")
	}
	waitFor(t, func() bool { inst.mu.Lock(); defer inst.mu.Unlock(); return inst.closed == 1 })
}

func TestReleasedIsBounded(t *testing.T) {
	var r released
	for i := range 3 * maxReleased {
		r.add(num(uint64(i+1)), reasonEnded)
	}
	if len(r.reasons) > maxReleased || len(r.order) > 2*maxReleased {
		t.Fatalf("%d reasons, %d ids kept", len(r.reasons), len(r.order))
	}
	if got := r.explain(num(3*maxReleased), time.Second); !strings.Contains(got, "already ended") {
		t.Fatalf("newest id: %s", got)
	}
	if got := r.explain(num(1), time.Second); !strings.Contains(got, "unknown to this worker") {
		t.Fatalf("oldest id: %s", got)
	}
}
