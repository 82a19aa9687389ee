package scheduler

import (
	"bytes"
	"slices"
	"testing"

	"github.com/helixflow/helixflow/workers/tensor"
)

// FuzzConcatSplit checks that joining requests' inputs and splitting the
// result back gives every request exactly its own tensors.
func FuzzConcatSplit(f *testing.F) {
	f.Add([]byte{3, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{1, 0})
	f.Add([]byte{8, 4, 4, 4, 4, 0, 0, 0, 0, 255, 254, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	f.Fuzz(func(t *testing.T, seed []byte) {
		src := bytes.NewReader(seed)
		next := func(n int) int { // a number in [0, n) taken from seed
			b, err := src.ReadByte()
			if err != nil {
				return 0
			}
			return int(b) % n
		}
		cols := int64(next(4))
		count := 1 + next(8)
		reqs := make([]*Request, count)
		sizes := make([]int64, count)
		for i := range reqs {
			rows := 1 + next(4)
			sizes[i] = int64(rows)
			vals := make([]float32, rows*int(cols))
			for j := range vals {
				vals[j] = float32(next(256))
			}
			words := make([]string, rows)
			for j := range words {
				words[j] = string(bytes.Repeat([]byte{byte('a' + next(26))}, next(5)))
			}
			ins := []tensor.Tensor{f32("x", []int64{int64(rows), cols}, vals...), strs("s", words...)}
			if next(2) == 1 {
				slices.Reverse(ins)
			}
			reqs[i] = &Request{Inputs: ins, Outputs: []string{"y"}}
		}
		for _, r := range reqs[1:] {
			if batchKey(r) != batchKey(reqs[0]) {
				t.Fatalf("compatible requests have different keys %q and %q", batchKey(r), batchKey(reqs[0]))
			}
		}

		joined, err := joinInputs(reqs)
		if err != nil {
			t.Fatal(err)
		}
		pieces, err := SplitOutputs(joined, sizes)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range reqs {
			for j, got := range pieces[i] {
				k := slices.IndexFunc(r.Inputs, func(t tensor.Tensor) bool { return t.Name == joined[j].Name })
				want := r.Inputs[k]
				if got.Name != want.Name || got.DataType != want.DataType || !slices.Equal(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
					t.Errorf("request %d tensor %q: got %+v, want %+v", i, want.Name, got, want)
				}
			}
		}
	})
}

func TestBatchKeySeparatesIncompatibleRequests(t *testing.T) {
	base := &Request{Inputs: []tensor.Tensor{f32("x", []int64{1, 2}, 1, 2), strs("s", "a")}, Outputs: []string{"y", "t"}}
	tests := []struct {
		name string
		r    *Request
		same bool
	}{
		{"other batch size and data", &Request{Inputs: []tensor.Tensor{f32("x", []int64{3, 2}, 1, 2, 3, 4, 5, 6), strs("s", "b", "c", "d")}, Outputs: []string{"y", "t"}}, true},
		{"inputs in other order", &Request{Inputs: []tensor.Tensor{strs("s", "a"), f32("x", []int64{1, 2}, 1, 2)}, Outputs: []string{"y", "t"}}, true},
		{"other item shape", &Request{Inputs: []tensor.Tensor{f32("x", []int64{1, 1, 2}, 1, 2), strs("s", "a")}, Outputs: []string{"y", "t"}}, false},
		{"other datatype", &Request{Inputs: []tensor.Tensor{{Name: "x", DataType: tensor.Int32, Shape: []int64{1, 2}, Data: make([]byte, 8)}, strs("s", "a")}, Outputs: []string{"y", "t"}}, false},
		{"missing input", &Request{Inputs: []tensor.Tensor{f32("x", []int64{1, 2}, 1, 2)}, Outputs: []string{"y", "t"}}, false},
		{"other outputs", &Request{Inputs: base.Inputs, Outputs: []string{"y"}}, false},
		{"outputs in other order", &Request{Inputs: base.Inputs, Outputs: []string{"t", "y"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := batchKey(tt.r) == batchKey(base); got != tt.same {
				t.Errorf("same key = %v, want %v", got, tt.same)
			}
		})
	}
}
