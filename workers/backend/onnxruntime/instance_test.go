package onnxruntime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// identityTypes maps testdata/identity_<suffix>.onnx to its datatype.
var identityTypes = map[string]tensor.DataType{
	"bool": tensor.Bool, "int8": tensor.Int8, "int16": tensor.Int16, "int32": tensor.Int32, "int64": tensor.Int64,
	"uint8": tensor.Uint8, "uint16": tensor.Uint16, "uint32": tensor.Uint32, "uint64": tensor.Uint64,
	"fp16": tensor.FP16, "bf16": tensor.BF16, "fp32": tensor.FP32, "fp64": tensor.FP64, "bytes": tensor.Bytes,
}

func TestExecuteSimple(t *testing.T) {
	inst := newTestInstance(t, "simple", nil)
	for _, batch := range []int{1, 3, 8, 300, 3} { // 300 rows are past stageLimit
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			out, err := inst.Execute(context.Background(), simpleInputs(batch), []string{"OUTPUT0", "OUTPUT1"})
			if err != nil {
				t.Fatal(err)
			}
			wantShape := []int64{int64(batch), 16}
			for i, name := range []string{"OUTPUT0", "OUTPUT1"} {
				if out[i].Name != name || out[i].DataType != tensor.Int32 || !slices.Equal(out[i].Shape, wantShape) {
					t.Fatalf("output %d = %s %s %v; want %s INT32 %v", i, out[i].Name, out[i].DataType, out[i].Shape, name, wantShape)
				}
			}
			sum, diff := int32s(out[0].Data), int32s(out[1].Data)
			for k := range 16 * batch {
				if sum[k] != int32(k)+1 || diff[k] != int32(k)-1 {
					t.Fatalf("element %d: sum %d, difference %d; want %d, %d", k, sum[k], diff[k], k+1, k-1)
				}
			}
		})
	}
}

func TestExecuteOutputSelection(t *testing.T) {
	inst := newTestInstance(t, "simple", nil)
	tests := []struct {
		asked []string
		want  []string
	}{
		{nil, []string{"OUTPUT0", "OUTPUT1"}},
		{[]string{"OUTPUT1"}, []string{"OUTPUT1"}},
		{[]string{"OUTPUT1", "OUTPUT0"}, []string{"OUTPUT1", "OUTPUT0"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.asked, ","), func(t *testing.T) {
			out, err := inst.Execute(context.Background(), simpleInputs(1), tc.asked)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range out {
				got = append(got, o.Name)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("outputs %v; want %v", got, tc.want)
			}
		})
	}
}

// identityInput is a [2,3] tensor of dt with distinct, valid elements.
func identityInput(dt tensor.DataType) tensor.Tensor {
	shape := []int64{2, 3}
	if dt == tensor.Bytes {
		elems := [][]byte{[]byte("helix"), {}, []byte("ünïcödé"), []byte(strings.Repeat("x", 300)), {0xff, 0x01}, []byte("end")}
		return tensor.Tensor{Name: "INPUT", DataType: dt, Shape: shape, Data: tensor.EncodeBytes(elems)}
	}
	data := make([]byte, 6*dt.ElementSize())
	for i := range data {
		data[i] = byte(i*37 + 11)
	}
	if dt == tensor.Bool {
		data = []byte{1, 0, 0, 1, 1, 0}
	}
	return tensor.Tensor{Name: "INPUT", DataType: dt, Shape: shape, Data: data}
}

func TestExecuteIdentityEveryType(t *testing.T) {
	for suffix, dt := range identityTypes {
		t.Run(string(dt), func(t *testing.T) {
			inst := newTestInstance(t, "identity_"+suffix, nil)
			in := identityInput(dt)
			out, err := inst.Execute(context.Background(), []tensor.Tensor{in}, []string{"OUTPUT"})
			if err != nil {
				t.Fatal(err)
			}
			got := out[0]
			if got.Name != "OUTPUT" || got.DataType != dt || !slices.Equal(got.Shape, in.Shape) {
				t.Fatalf("output %s %s %v; want OUTPUT %s %v", got.Name, got.DataType, got.Shape, dt, in.Shape)
			}
			if !bytes.Equal(got.Data, in.Data) {
				t.Fatalf("output data %x; want %x", got.Data, in.Data)
			}
		})
	}
}

func TestExecuteDynamicOutputShape(t *testing.T) {
	inst := newTestInstance(t, "reduce_sum", nil)
	for _, shape := range [][]int64{{1, 1}, {2, 5}, {4, 7}} {
		t.Run(fmt.Sprint(shape), func(t *testing.T) {
			n := int(shape[0] * shape[1])
			vals := make([]float32, n)
			want := make([]float32, shape[0])
			for i := range vals {
				vals[i] = float32(i) / 2
				want[i/int(shape[1])] += vals[i]
			}
			in := tensor.Tensor{Name: "INPUT", DataType: tensor.FP32, Shape: shape, Data: float32Bytes(vals...)}
			out, err := inst.Execute(context.Background(), []tensor.Tensor{in}, []string{"OUTPUT"})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out[0].Shape, shape[:1]) {
				t.Fatalf("output shape %v; want %v", out[0].Shape, shape[:1])
			}
			if !bytes.Equal(out[0].Data, float32Bytes(want...)) {
				t.Fatalf("output %x; want sums %v", out[0].Data, want)
			}
		})
	}
}

func TestExecuteEmptyBatch(t *testing.T) {
	tests := []struct{ model, dt string }{{"simple", "INT32"}, {"identity_fp16", "FP16"}, {"identity_bytes", "BYTES"}}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			inst := newTestInstance(t, tc.model, nil)
			var inputs []tensor.Tensor
			if tc.model == "simple" {
				inputs = simpleInputs(0)
			} else {
				inputs = []tensor.Tensor{{Name: "INPUT", DataType: tensor.DataType(tc.dt), Shape: []int64{0, 3}}}
			}
			out, err := inst.Execute(context.Background(), inputs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(out[0].Data) != 0 || out[0].Shape[0] != 0 {
				t.Fatalf("output %v with %d bytes; want an empty batch", out[0].Shape, len(out[0].Data))
			}
		})
	}
}

func TestExecuteUnalignedInput(t *testing.T) {
	inst := newTestInstance(t, "identity_fp64", nil)
	in := identityInput(tensor.FP64)
	buf := make([]byte, len(in.Data)+1)
	copy(buf[1:], in.Data)
	unaligned := in
	unaligned.Data = buf[1:]
	out, err := inst.Execute(context.Background(), []tensor.Tensor{unaligned}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out[0].Data, in.Data) {
		t.Fatalf("output %x; want %x", out[0].Data, in.Data)
	}
}

func TestExecuteOutputsOutliveValues(t *testing.T) {
	inst := newTestInstance(t, "simple", nil)
	first, err := inst.Execute(context.Background(), simpleInputs(2), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(first[0].Data)
	// A second run must not write into the first run's results.
	inputs := simpleInputs(2)
	inputs[1].Data = int32Bytes(slices.Repeat([]int32{100}, 32)...)
	if _, err := inst.Execute(context.Background(), inputs, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first[0].Data, want) {
		t.Fatal("the first run's output changed after a second run")
	}
}

func TestExecuteBadRequests(t *testing.T) {
	inst := newTestInstance(t, "simple", nil)
	ok := simpleInputs(1)
	with := func(i int, change func(*tensor.Tensor)) []tensor.Tensor {
		in := simpleInputs(1)
		change(&in[i])
		return in
	}
	tests := []struct {
		name    string
		inputs  []tensor.Tensor
		outputs []string
		message string
	}{
		{"unknown input", with(0, func(t *tensor.Tensor) { t.Name = "INPUT9" }), nil, `no input "INPUT9"`},
		{"wrong datatype", with(1, func(t *tensor.Tensor) { t.DataType = tensor.FP32 }), nil, `input "INPUT1" has datatype FP32, the model expects INT32`},
		{"wrong dimension", with(0, func(t *tensor.Tensor) { t.Shape = []int64{2, 8} }), nil, `input "INPUT0" has shape [2 8], the model expects [-1 16]`},
		{"wrong rank", with(0, func(t *tensor.Tensor) { t.Shape = []int64{16} }), nil, `input "INPUT0" has shape [16]`},
		{"short data", with(0, func(t *tensor.Tensor) { t.Data = t.Data[:60] }), nil, `"INPUT0" has 60 bytes of data`},
		{"scalar", with(0, func(t *tensor.Tensor) { t.Shape, t.Data = []int64{}, t.Data[:4] }), nil, `input "INPUT0" has shape []`},
		{"missing input", ok[:1], nil, `input "INPUT1" is missing`},
		{"input twice", append(simpleInputs(1), ok[0]), nil, `input "INPUT0" is given twice`},
		{"unknown output", ok, []string{"OUTPUT0", "OUTPUT7"}, `no output "OUTPUT7"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := inst.Execute(context.Background(), tc.inputs, tc.outputs)
			if err == nil {
				t.Fatal("no error")
			}
			if code := infer.CodeOf(err); code != infer.CodeInvalidArgument {
				t.Errorf("code %v; want invalid argument (error %v)", code, err)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not contain %q", err, tc.message)
			}
		})
	}
	// The instance still serves good requests.
	if _, err := inst.Execute(context.Background(), simpleInputs(1), nil); err != nil {
		t.Fatalf("after bad requests: %v", err)
	}
}

func TestExecuteBytesWithNUL(t *testing.T) {
	inst := newTestInstance(t, "identity_bytes", nil)
	elems := [][]byte{[]byte("a"), []byte("b\x00c"), nil, nil, nil, nil}
	in := tensor.Tensor{Name: "INPUT", DataType: tensor.Bytes, Shape: []int64{2, 3}, Data: tensor.EncodeBytes(elems)}
	_, err := inst.Execute(context.Background(), []tensor.Tensor{in}, nil)
	if !errors.Is(err, backend.ErrUnsupported) || infer.CodeOf(err) != infer.CodeInvalidArgument || !strings.Contains(err.Error(), "element 1 contains a NUL byte") {
		t.Fatalf("error = %v (code %v); want an invalid-argument ErrUnsupported naming element 1", err, infer.CodeOf(err))
	}
}

func TestExecuteHalfPrecisionOutputShapes(t *testing.T) {
	half := func(batch int64, cols int64) tensor.Tensor {
		return tensor.Tensor{Name: "INPUT", DataType: tensor.FP16, Shape: []int64{batch, cols}, Data: make([]byte, 2*batch*cols)}
	}
	t.Run("free non-batch dimension", func(t *testing.T) {
		inst := newTestInstance(t, "fp16_free_dims", nil)
		_, err := inst.Execute(context.Background(), []tensor.Tensor{half(2, 5)}, nil)
		if !errors.Is(err, backend.ErrUnsupported) || !strings.Contains(err.Error(), `output "OUTPUT" is FP16 with shape [-1 -1]`) {
			t.Fatalf("error = %v; want ErrUnsupported naming the output", err)
		}
	})
	t.Run("first dimension is not the batch", func(t *testing.T) {
		// The guessed shape [2,2] is wrong ([4,2]); ORT must refuse it rather
		// than return half the data.
		inst := newTestInstance(t, "fp16_reshape", nil)
		if _, err := inst.Execute(context.Background(), []tensor.Tensor{half(2, 4)}, nil); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestExecuteCancelled(t *testing.T) {
	inst := newTestInstance(t, "simple", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := inst.Execute(ctx, simpleInputs(1), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v; want context.Canceled", err)
	}
	// The terminate flag must not stick to the next run.
	if _, err := inst.Execute(context.Background(), simpleInputs(1), nil); err != nil {
		t.Fatalf("after a cancelled run: %v", err)
	}
}

func TestExecuteCancelledMidRun(t *testing.T) {
	inst := newTestInstance(t, "slow", nil)
	const batch = 4096 // 600 chained [4096,256]x[256,256] MatMuls: seconds of work
	in := tensor.Tensor{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{batch, 256}, Data: make([]byte, batch*256*4)}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := inst.Execute(ctx, []tensor.Tensor{in}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v after %v; want context.DeadlineExceeded", err, time.Since(start))
	}
	t.Logf("run stopped %v after its start", time.Since(start))
	small := tensor.Tensor{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{1, 256}, Data: make([]byte, 256*4)}
	if _, err := inst.Execute(context.Background(), []tensor.Tensor{small}, nil); err != nil {
		t.Fatalf("after a stopped run: %v", err)
	}
}

func TestExecuteFloatValues(t *testing.T) {
	// The MLP's first row with an all-zero input is Gemm(Relu(b1)) + b2, so
	// only check that results are finite and batch rows agree.
	inst := newTestInstance(t, "mlp", nil)
	in := tensor.Tensor{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{3, 64}, Data: make([]byte, 3*64*4)}
	out, err := inst.Execute(context.Background(), []tensor.Tensor{in}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out[0].Shape, []int64{3, 10}) {
		t.Fatalf("shape %v; want [3 10]", out[0].Shape)
	}
	rows := [][]byte{out[0].Data[:40], out[0].Data[40:80], out[0].Data[80:]}
	if !bytes.Equal(rows[0], rows[1]) || !bytes.Equal(rows[0], rows[2]) {
		t.Fatal("equal input rows gave different outputs")
	}
	for i := 0; i < 40; i += 4 {
		v := math.Float32frombits(uint32(rows[0][i]) | uint32(rows[0][i+1])<<8 | uint32(rows[0][i+2])<<16 | uint32(rows[0][i+3])<<24)
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || v == 0 {
			t.Fatalf("output element %d = %v", i/4, v)
		}
	}
}

func BenchmarkExecuteSimple(b *testing.B) {
	inst := newTestInstance(b, "simple", nil)
	inputs := simpleInputs(1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := inst.Execute(ctx, inputs, []string{"OUTPUT0", "OUTPUT1"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExecuteMLP(b *testing.B) {
	inst := newTestInstance(b, "mlp", nil)
	ctx := context.Background()
	for _, batch := range []int64{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			vals := make([]float32, batch*64)
			for i := range vals {
				vals[i] = float32(i%7) / 7
			}
			inputs := []tensor.Tensor{{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{batch, 64}, Data: float32Bytes(vals...)}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := inst.Execute(ctx, inputs, []string{"OUTPUT"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestExecuteOutputShapeGuesses(t *testing.T) {
	floats := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i)
		}
		return v
	}
	t.Run("first dimension is the batch", func(t *testing.T) {
		inst := newTestInstance(t, "mlp", nil).(*Instance)
		for _, batch := range []int64{1, 5, 0} {
			in := tensor.Tensor{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{batch, 64}, Data: float32Bytes(floats(int(batch) * 64)...)}
			out, err := inst.Execute(context.Background(), []tensor.Tensor{in}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out[0].Shape, []int64{batch, 10}) || len(out[0].Data) != int(batch)*40 {
				t.Fatalf("batch %d: output %v with %d bytes; want [%d 10] with %d", batch, out[0].Shape, len(out[0].Data), batch, batch*40)
			}
		}
		if !inst.guessShapes {
			t.Error("a right guess turned guessing off")
		}
	})
	t.Run("first dimension is not the batch", func(t *testing.T) {
		// [batch,4] -> [2*batch,2]: the guess [batch,2] is wrong, so ORT
		// rejects it and the run must be redone with ORT allocating.
		inst := newTestInstance(t, "fp32_reshape", nil).(*Instance)
		for _, batch := range []int64{2, 3} {
			vals := floats(int(batch) * 4)
			in := tensor.Tensor{Name: "INPUT", DataType: tensor.FP32, Shape: []int64{batch, 4}, Data: float32Bytes(vals...)}
			out, err := inst.Execute(context.Background(), []tensor.Tensor{in}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out[0].Shape, []int64{2 * batch, 2}) || !bytes.Equal(out[0].Data, in.Data) {
				t.Fatalf("batch %d: output %v %x; want [%d 2] %x", batch, out[0].Shape, out[0].Data, 2*batch, in.Data)
			}
			if inst.guessShapes {
				t.Fatal("guessing is still on after a wrong guess")
			}
		}
	})
}
