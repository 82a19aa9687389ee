package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// FuzzDecodeInferRequest feeds arbitrary bodies to the request decoder: it
// must never panic, must fail only with a client error, and what it accepts
// must be valid tensors that encode back into a response.
func FuzzDecodeInferRequest(f *testing.F) {
	seeds := []string{
		`{"id":"1","inputs":[{"name":"X","shape":[2],"datatype":"FP32","data":[1,2.5]}]}`,
		`{"inputs":[{"name":"X","shape":[2,2],"datatype":"INT8","data":[[1,-2],[3,4]]}],"outputs":[{"name":"X","parameters":{"binary_data":true}}]}`,
		`{"inputs":[{"name":"S","shape":[2],"datatype":"BYTES","data":["a","\u00e9\n"]}],"parameters":{"binary_data_output":true,"timeout":5}}`,
		`{"inputs":[{"name":"B","shape":[3],"datatype":"BOOL","data":[true,false,true]}]}`,
		`{"inputs":[{"name":"H","shape":[1],"datatype":"FP16","data":[0.5]},{"name":"G","shape":[1],"datatype":"BF16","data":[2]}]}`,
		`{"inputs":[{"name":"X","shape":[2],"datatype":"UINT16","parameters":{"binary_data_size":4}}]}` + "\x01\x00\x02\x00",
		`{"inputs":[{"name":"S","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":7}}]}` + "\x03\x00\x00\x00abc",
		`{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"X","parameters":{"classification":1}}]}`,
	}
	for _, s := range seeds {
		headerLen := bytes.LastIndexByte([]byte(s), '}') + 1
		f.Add([]byte(s), headerLen)
	}
	f.Fuzz(func(t *testing.T, body []byte, headerLen int) {
		call, err := decodeInferRequest("m", "1", body, headerLen, 1<<20)
		if err != nil {
			var ie *infer.Error
			if !errors.As(err, &ie) || (ie.Code != infer.CodeInvalidArgument && ie.Code != infer.CodeUnimplemented) {
				t.Fatalf("error is not a client error: %#v", err)
			}
			return
		}
		for _, in := range call.req.Inputs {
			if err := in.Validate(); err != nil {
				t.Fatalf("accepted an invalid input: %v", err)
			}
		}
		resp := &infer.Response{Model: "m", Version: "1", Outputs: call.req.Inputs}
		if _, _, err := encodeInferResponse(nil, resp, call); err != nil && infer.CodeOf(err) != infer.CodeInvalidArgument {
			t.Fatalf("cannot encode accepted inputs back: %v", err)
		}
	})
}

// FuzzBinarySplit checks the splitting of the binary part of a body: three
// binary inputs must be accepted exactly when their sizes add up to the
// bytes after the JSON, and each must get its own bytes.
func FuzzBinarySplit(f *testing.F) {
	f.Add(uint16(1), uint16(2), uint16(3), []byte("abcdef"), 0)
	f.Add(uint16(0), uint16(0), uint16(4), []byte("abcd"), 0)
	f.Add(uint16(4), uint16(4), uint16(4), []byte("abcd"), 0)
	f.Add(uint16(1), uint16(1), uint16(1), []byte("abcd"), -2)
	f.Fuzz(func(t *testing.T, a, b, c uint16, tail []byte, headerDelta int) {
		sizes := []int{int(a), int(b), int(c)}
		header := `{"inputs":[`
		for i, n := range sizes {
			if i > 0 {
				header += ","
			}
			header += fmt.Sprintf(`{"name":"I%d","shape":[%d],"datatype":"UINT8","parameters":{"binary_data_size":%d}}`, i, n, n)
		}
		header += "]}"
		body := append([]byte(header), tail...)
		headerLen := len(header) + headerDelta
		call, err := decodeInferRequest("m", "", body, headerLen, 1<<20)
		// A longer header is still valid JSON when the bytes it takes from
		// the tail are whitespace; a shorter one never is.
		ok := headerDelta >= 0 && headerDelta <= len(tail) &&
			len(bytes.TrimLeft(tail[:headerDelta], " \t\r\n")) == 0 &&
			int(a)+int(b)+int(c) == len(tail)-headerDelta
		if ok {
			tail = tail[headerDelta:]
		}
		if ok != (err == nil) {
			t.Fatalf("sizes %v, %d tail bytes, header delta %d: err = %v", sizes, len(tail), headerDelta, err)
		}
		if err != nil {
			return
		}
		off := 0
		for i, n := range sizes {
			got := call.req.Inputs[i].Data
			if !bytes.Equal(got, tail[off:off+n]) || cap(got) != n {
				t.Fatalf("input %d got %q (cap %d), want %q", i, got, cap(got), tail[off:off+n])
			}
			off += n
		}
	})
}

// FuzzBytesData checks BYTES decoding both ways: a binary BYTES tensor is
// accepted only when its length prefixes fill the data exactly, and a JSON
// string array survives encoding back to JSON unchanged.
func FuzzBytesData(f *testing.F) {
	f.Add([]byte("\x03\x00\x00\x00abc\x00\x00\x00\x00"), int8(2), `["abc",""]`)
	f.Add([]byte("\xff\xff\xff\xffabc"), int8(1), `["\u00e9\ud83d\ude00","a\"b"]`)
	f.Add([]byte{}, int8(0), `[]`)
	f.Add([]byte("\x01\x00\x00"), int8(1), `[["x"],["\\","\n"]]`)
	f.Fuzz(func(t *testing.T, payload []byte, count int8, jsonData string) {
		n := int64(count)
		header := fmt.Sprintf(`{"inputs":[{"name":"S","shape":[%d],"datatype":"BYTES","parameters":{"binary_data_size":%d}}]}`, n, len(payload))
		body := append([]byte(header), payload...)
		_, err := decodeInferRequest("m", "", body, len(header), 1<<20)
		_, wantErr := tensor.DecodeBytes(payload, n)
		if n < 0 {
			wantErr = errors.New("negative dim")
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("binary BYTES %q count %d: decoder err %v, tensor.DecodeBytes err %v", payload, n, err, wantErr)
		}

		raw, err := decodeJSONData([]byte(jsonData), tensor.Bytes, n, 1<<20)
		if err != nil {
			return
		}
		if _, err := tensor.CountBytesElements(raw, n); err != nil {
			t.Fatalf("JSON %q decoded to invalid BYTES: %v", jsonData, err)
		}
		out, err := appendJSONData(nil, &tensor.Tensor{Name: "S", DataType: tensor.Bytes, Shape: []int64{n}, Data: raw})
		if err != nil {
			t.Fatalf("cannot write back %q: %v", jsonData, err)
		}
		again, err := decodeJSONData(out, tensor.Bytes, n, 1<<20)
		if err != nil || !bytes.Equal(again, raw) {
			t.Fatalf("round trip of %q through %s: %v", jsonData, out, err)
		}
	})
}

// FuzzJSONDataRoundTrip decodes arbitrary JSON data for every datatype;
// whatever is accepted must be written back as JSON that decodes to the
// same bytes.
func FuzzJSONDataRoundTrip(f *testing.F) {
	types := []tensor.DataType{tensor.Bool, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64,
		tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64, tensor.FP16, tensor.BF16, tensor.FP32, tensor.FP64}
	f.Add(uint8(11), `[1.5,-0.1,3e38]`, int8(3))
	f.Add(uint8(9), `[[5e-324],[1e-7, 123456789012345678]]`, int8(3))
	f.Add(uint8(0), `[true,[false]]`, int8(2))
	f.Add(uint8(4), `[18446744073709551615]`, int8(1))
	f.Add(uint8(8), `[-9223372036854775808, 0]`, int8(2))
	f.Add(uint8(10), `[65504, 6e-8, -0.0]`, int8(3))
	f.Fuzz(func(t *testing.T, typeIndex uint8, jsonData string, count int8) {
		dt := types[int(typeIndex)%len(types)]
		n := int64(count)
		raw, err := decodeJSONData([]byte(jsonData), dt, n, 1<<20)
		if err != nil {
			return
		}
		if want := n * int64(dt.ElementSize()); int64(len(raw)) != want {
			t.Fatalf("%s %q: %d bytes, want %d", dt, jsonData, len(raw), want)
		}
		out, err := appendJSONData(nil, &tensor.Tensor{Name: "X", DataType: dt, Shape: []int64{n}, Data: raw})
		if err != nil {
			t.Fatalf("cannot write back %s %q: %v", dt, jsonData, err)
		}
		again, err := decodeJSONData(out, dt, n, 1<<20)
		if err != nil || !bytes.Equal(again, raw) {
			t.Fatalf("%s %q wrote %s, which reads back as %v (%v), want %v", dt, jsonData, out, again, err, raw)
		}
	})
}
