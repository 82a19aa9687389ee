package tensor

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseDataType(t *testing.T) {
	for _, s := range []string{"BOOL", "UINT8", "INT64", "FP16", "BF16", "FP32", "FP64", "BYTES"} {
		if d, err := ParseDataType(s); err != nil || string(d) != s {
			t.Errorf("ParseDataType(%q) = %q, %v", s, d, err)
		}
	}
	for _, s := range []string{"", "fp32", "FLOAT", "STRING"} {
		if _, err := ParseDataType(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDataType(%q): err = %v", s, err)
		}
	}
}

func TestElementCount(t *testing.T) {
	tests := []struct {
		shape   []int64
		want    int64
		wantErr string
	}{
		{nil, 1, ""},
		{[]int64{2, 3}, 6, ""},
		{[]int64{0, 5}, 0, ""},
		{[]int64{2, -1}, 0, "negative"},
		{[]int64{math.MaxInt64, 2}, 0, "too many elements"},
		{[]int64{1 << 40, 1 << 40}, 0, "too many elements"},
	}
	for _, tt := range tests {
		got, err := ElementCount(tt.shape)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ElementCount(%v): err = %v, want %q", tt.shape, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ElementCount(%v) = %d, %v; want %d", tt.shape, got, err, tt.want)
		}
	}
	if _, err := ByteSize(FP64, []int64{math.MaxInt64 / 4}); err == nil {
		t.Error("ByteSize overflow not caught")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		tensor  Tensor
		wantErr string
	}{
		{"fp32 ok", Tensor{Name: "x", DataType: FP32, Shape: []int64{2}, Data: make([]byte, 8)}, ""},
		{"fp32 short", Tensor{Name: "x", DataType: FP32, Shape: []int64{2}, Data: make([]byte, 7)}, "has 7 bytes of data, shape [2] of FP32 needs 8"},
		{"bad type", Tensor{Name: "x", DataType: "FP8", Shape: []int64{1}}, "unknown datatype"},
		{"negative dim", Tensor{Name: "x", DataType: Int8, Shape: []int64{-1}}, "negative"},
		{"bytes ok", Tensor{Name: "s", DataType: Bytes, Shape: []int64{2}, Data: EncodeBytes([][]byte{[]byte("ab"), nil})}, ""},
		{"bytes too few", Tensor{Name: "s", DataType: Bytes, Shape: []int64{3}, Data: EncodeBytes([][]byte{[]byte("ab"), nil})}, "length prefix runs past"},
		{"bytes too many", Tensor{Name: "s", DataType: Bytes, Shape: []int64{1}, Data: EncodeBytes([][]byte{[]byte("ab"), nil})}, "bytes left after 1"},
		{"bytes length past end", Tensor{Name: "s", DataType: Bytes, Shape: []int64{1}, Data: []byte{9, 0, 0, 0, 'a'}}, "length 9 runs past"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.tensor.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestBytesRoundTrip(t *testing.T) {
	elems := [][]byte{[]byte("hello"), {}, {0, 0xff}, []byte(strings.Repeat("z", 300))}
	got, err := DecodeBytes(EncodeBytes(elems), int64(len(elems)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range elems {
		if !bytes.Equal(got[i], elems[i]) {
			t.Fatalf("element %d = %q", i, got[i])
		}
	}
	if _, err := DecodeBytes([]byte{1, 0, 0, 0}, 1<<40); !errors.Is(err, ErrInvalid) {
		t.Fatalf("huge count: err = %v", err)
	}
}

func TestConcatSplit(t *testing.T) {
	a := Tensor{Name: "x", DataType: Int16, Shape: []int64{1, 2}, Data: []byte{1, 0, 2, 0}}
	b := Tensor{Name: "x", DataType: Int16, Shape: []int64{2, 2}, Data: []byte{3, 0, 4, 0, 5, 0, 6, 0}}
	c, err := Concat([]Tensor{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if c.Shape[0] != 3 || len(c.Data) != 12 {
		t.Fatalf("concat = %+v", c)
	}
	parts, err := Split(c, []int64{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parts[0].Data, a.Data) || !bytes.Equal(parts[1].Data, b.Data) || parts[1].Shape[0] != 2 {
		t.Fatalf("split = %+v", parts)
	}
	if _, err := Concat([]Tensor{a, {Name: "x", DataType: Int16, Shape: []int64{1, 3}, Data: make([]byte, 6)}}); err == nil {
		t.Fatal("concat of different item shapes succeeded")
	}
	if _, err := Concat([]Tensor{a, {Name: "x", DataType: Uint16, Shape: []int64{1, 2}, Data: make([]byte, 4)}}); err == nil {
		t.Fatal("concat of different datatypes succeeded")
	}
	if _, err := Split(c, []int64{1, 1}); err == nil {
		t.Fatal("split with wrong total succeeded")
	}
}

func TestSplitBytes(t *testing.T) {
	s := Tensor{Name: "s", DataType: Bytes, Shape: []int64{3, 1}, Data: EncodeBytes([][]byte{[]byte("a"), []byte("bcd"), nil})}
	parts, err := Split(s, []int64{2, 1})
	if err != nil {
		t.Fatal(err)
	}
	first, err := DecodeBytes(parts[0].Data, 2)
	if err != nil || string(first[1]) != "bcd" {
		t.Fatalf("first part %q, %v", first, err)
	}
	if err := parts[1].Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecodeBytes: the BYTES decoder must reject, never panic on, any input,
// and whatever it accepts must re-encode to the same bytes.
func FuzzDecodeBytes(f *testing.F) {
	f.Add(EncodeBytes([][]byte{[]byte("abc"), nil}), int64(2))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, int64(1))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, data []byte, n int64) {
		elems, err := DecodeBytes(data, n)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if !bytes.Equal(EncodeBytes(elems), data) {
			t.Fatal("decode/encode round trip changed the data")
		}
		if _, err := CountBytesElements(data, n); err != nil {
			t.Fatalf("CountBytesElements rejects what DecodeBytes accepts: %v", err)
		}
	})
}
