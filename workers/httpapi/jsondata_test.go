package httpapi

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/tensor"
)

func TestAppendDouble(t *testing.T) {
	// Expected strings are what rapidjson's Writer::Double prints.
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{1, "1.0"},
		{-2.5, "-2.5"},
		{100, "100.0"},
		{123.456, "123.456"},
		{0.5, "0.5"},
		{0.001, "0.001"},
		{1e-6, "0.000001"},
		{1.5e-6, "0.0000015"},
		{1e-7, "1e-7"},
		{1.234e-7, "1.234e-7"},
		{1e20, "100000000000000000000.0"},
		{1e21, "1e21"},
		{1.5e21, "1.5e21"},
		{float64(float32(0.1)), "0.10000000149011612"},
		{math.MaxFloat64, "1.7976931348623157e308"},
		{5e-324, "5e-324"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "Infinity"},
		{math.Inf(-1), "-Infinity"},
	}
	for _, tt := range tests {
		if got := string(appendDouble(nil, tt.v)); got != tt.want {
			t.Errorf("appendDouble(%v) = %s, want %s", tt.v, got, tt.want)
		}
	}
}

func TestDecodeJSONData(t *testing.T) {
	tests := []struct {
		name string
		dt   tensor.DataType
		json string
		n    int64
		want []byte
		err  string
	}{
		{"spaces", tensor.Int16, " [ 1 ,\n\t-2 ]\r\n", 2, le16(1, 0xfffe), ""},
		{"empty", tensor.FP32, "[]", 0, []byte{}, ""},
		{"nested empty", tensor.FP32, "[[],[]]", 0, []byte{}, ""},
		{"ragged nesting", tensor.Uint8, "[[1],[2,[3]]]", 3, []byte{1, 2, 3}, ""},
		{"exponent", tensor.FP64, "[1E2,2.5e-1]", 2, le64(math.Float64bits(100), math.Float64bits(0.25)), ""},
		{"fp32 ints", tensor.FP32, "[3]", 1, f32s(3), ""},
		{"fp16 rounding", tensor.FP16, "[0.1]", 1, le16(0x2e66), ""},
		{"fp16 subnormal", tensor.FP16, "[5.960464477539063e-8]", 1, le16(1), ""},
		{"bf16 rounding", tensor.BF16, "[3.14159]", 1, le16(0x4049), ""},
		{"escapes", tensor.Bytes, `["a\"b\\c\/d\b\f\n\r\t"]`, 1, tensor.EncodeBytes([][]byte{[]byte("a\"b\\c/d\b\f\n\r\t")}), ""},
		{"unicode escape", tensor.Bytes, `["\u00e9\u20ac"]`, 1, tensor.EncodeBytes([][]byte{[]byte("é€")}), ""},
		{"surrogate pair", tensor.Bytes, `["\ud83d\ude00"]`, 1, tensor.EncodeBytes([][]byte{[]byte("😀")}), ""},
		{"lone surrogate", tensor.Bytes, `["\ud83dx"]`, 1, tensor.EncodeBytes([][]byte{[]byte("\uFFFDx")}), ""},
		{"raw utf8", tensor.Bytes, `["日本"]`, 1, tensor.EncodeBytes([][]byte{[]byte("日本")}), ""},
		{"invalid utf8 kept", tensor.Bytes, "[\"\xff\xfe\"]", 1, tensor.EncodeBytes([][]byte{{0xff, 0xfe}}), ""},

		{"not array", tensor.FP32, `{"a":1}`, 1, nil, "'data' must be an array"},
		{"trailing text", tensor.FP32, `[1] x`, 1, nil, "unexpected text after the array"},
		{"missing comma", tensor.FP32, `[1 2]`, 2, nil, "expected ',' or ']'"},
		{"trailing comma", tensor.FP32, `[1,]`, 1, nil, "unexpected character ']'"},
		{"unterminated", tensor.FP32, `[1,`, 1, nil, "unexpected end of array"},
		{"leading zero", tensor.Int32, `[01]`, 1, nil, "expected ',' or ']'"},
		{"plus sign", tensor.Int32, `[+1]`, 1, nil, "unexpected character '+'"},
		{"bare minus", tensor.FP32, `[-]`, 1, nil, "invalid number"},
		{"dot without digits", tensor.FP32, `[1.]`, 1, nil, "invalid number"},
		{"exponent without digits", tensor.FP32, `[1e]`, 1, nil, "invalid number"},
		{"nan literal", tensor.FP32, `[NaN]`, 1, nil, "unexpected character 'N'"},
		{"bad literal", tensor.Bool, `[tru]`, 1, nil, "invalid literal"},
		{"bad escape", tensor.Bytes, `["\x"]`, 1, nil, `invalid escape '\x'`},
		{"bad unicode escape", tensor.Bytes, `["\u12g4"]`, 1, nil, `invalid \u escape`},
		{"control char", tensor.Bytes, "[\"a\nb\"]", 1, nil, "control character in string"},
		{"unterminated string", tensor.Bytes, `["abc`, 1, nil, "unterminated string"},
		{"bool for int", tensor.Int64, `[true]`, 1, nil, "expected a number, got true"},
		{"uint64 overflow", tensor.Uint64, `[18446744073709551616]`, 1, nil, "out of range for UINT64"},
		{"int64 overflow", tensor.Int64, `[9223372036854775808]`, 1, nil, "out of range for INT64"},
		{"int exponent", tensor.Int64, `[1e3]`, 1, nil, "is not an integer"},
		{"fp64 overflow", tensor.FP64, `[1e309]`, 1, nil, "out of range for FP64"},
		{"bf16 overflow", tensor.BF16, `[3.4e38]`, 1, nil, "out of range for BF16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeJSONData([]byte(tt.json), tt.dt, tt.n, 1<<20)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecodeJSONDataBytesLimit(t *testing.T) {
	data := `["` + strings.Repeat("x", 100) + `","` + strings.Repeat("y", 100) + `"]`
	if _, err := decodeJSONData([]byte(data), tensor.Bytes, 2, 50); err == nil || !strings.Contains(err.Error(), "limit of 50 bytes") {
		t.Errorf("error %v", err)
	}
}

func TestAppendJSONDataRejectsBadTensors(t *testing.T) {
	tests := []tensor.Tensor{
		{Name: "a", DataType: tensor.FP32, Shape: []int64{2}, Data: make([]byte, 7)},
		{Name: "b", DataType: tensor.Bytes, Shape: []int64{1}, Data: le32(5)},
		{Name: "c", DataType: tensor.Bytes, Shape: []int64{1}, Data: []byte{1}},
		{Name: "d", DataType: tensor.Bytes, Shape: []int64{1}, Data: append(le32(0), 1)},
		{Name: "e", DataType: tensor.FP32, Shape: []int64{-1}},
	}
	for _, tt := range tests {
		if _, err := appendJSONData(nil, &tt); err == nil {
			t.Errorf("tensor %q: no error", tt.Name)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	got := string(appendJSONString(nil, []byte("a\"\\/\x01\x1f\n\xffé")))
	want := `"a\"\\/\u0001\u001f\n` + "\xffé\""
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestAppendDoubleFastPath checks the decimal shortcut against the general
// rapidjson layout on values around its edges.
func TestAppendDoubleFastPath(t *testing.T) {
	for _, v := range []float64{1e-5, 1.2345e-5, 0.1, 1, 7.5, 12345.678, 1e15, 123456789012345678, 9.999e19,
		float64(float32(0.3)), float64(float32(1e-5)), math.Nextafter(1e20, 0)} {
		fast := string(appendDouble(nil, v))
		general := string(appendDoubleGeneral(nil, v))
		if fast != general {
			t.Errorf("%v: fast path %s, general %s", v, fast, general)
		}
	}
}

// appendDoubleGeneral lays out positive v by rapidjson's rules alone,
// without appendDouble's decimal shortcut.
func appendDoubleGeneral(dst []byte, v float64) []byte {
	e := strconv.AppendFloat(nil, v, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(string(e), "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expStr)
	kk := exp + 1
	k := kk - len(digits)
	switch {
	case k >= 0 && kk <= 21:
		return append(dst, digits+strings.Repeat("0", k)+".0"...)
	case kk > 0 && kk <= 21:
		return append(dst, digits[:kk]+"."+digits[kk:]...)
	case kk > -6 && kk <= 0:
		return append(dst, "0."+strings.Repeat("0", -kk)+digits...)
	}
	return append(dst, e...)
}
