package httpapi

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// inferResponse is a decoded inference response: its JSON header and the
// binary data of each binary output.
type inferResponse struct {
	ID           string         `json:"id"`
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version"`
	Parameters   map[string]any `json:"parameters"`
	Outputs      []struct {
		Name       string          `json:"name"`
		Datatype   string          `json:"datatype"`
		Shape      []int64         `json:"shape"`
		Parameters map[string]int  `json:"parameters"`
		Data       json.RawMessage `json:"data"`
	} `json:"outputs"`
	binary map[string][]byte
}

// parseInferResponse splits a response as tritonclient does: by the
// Inference-Header-Content-Length header and each output's binary_data_size.
func parseInferResponse(t *testing.T, r response) inferResponse {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	headerLen := len(r.body)
	if v := r.header.Get(headerLengthHeader); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n > len(r.body) {
			t.Fatalf("bad %s %q for a %d-byte body", headerLengthHeader, v, len(r.body))
		}
		headerLen = n
		if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("binary response Content-Type %q", ct)
		}
	} else if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("JSON response Content-Type %q", ct)
	}
	var out inferResponse
	if err := json.Unmarshal(r.body[:headerLen], &out); err != nil {
		t.Fatalf("response header is not JSON: %v\n%s", err, r.body[:headerLen])
	}
	rest := r.body[headerLen:]
	out.binary = map[string][]byte{}
	for _, o := range out.Outputs {
		if size, ok := o.Parameters["binary_data_size"]; ok {
			if size > len(rest) {
				t.Fatalf("output %s: binary_data_size %d, %d bytes left", o.Name, size, len(rest))
			}
			out.binary[o.Name], rest = rest[:size], rest[size:]
		}
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes after the last binary output", len(rest))
	}
	return out
}

// binaryRequest builds a body with the binary data extension.
func binaryRequest(t *testing.T, header string, blobs ...[]byte) ([]byte, map[string]string) {
	t.Helper()
	body := []byte(header)
	for _, b := range blobs {
		body = append(body, b...)
	}
	return body, map[string]string{headerLengthHeader: strconv.Itoa(len(header))}
}

func le16(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return b
}

func le32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func le64(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func f32s(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// datatypeCases holds, per datatype, JSON data, the bytes it decodes to and
// the JSON the response writes for those bytes.
var datatypeCases = []struct {
	dt       tensor.DataType
	jsonData string
	raw      []byte
	jsonOut  string
}{
	{tensor.Bool, `[true,false,true]`, []byte{1, 0, 1}, `[true,false,true]`},
	{tensor.Uint8, `[0,7,255]`, []byte{0, 7, 255}, `[0,7,255]`},
	{tensor.Uint16, `[0,7,65535]`, le16(0, 7, 65535), `[0,7,65535]`},
	{tensor.Uint32, `[0,7,4294967295]`, le32(0, 7, 4294967295), `[0,7,4294967295]`},
	{tensor.Uint64, `[0,7,18446744073709551615]`, le64(0, 7, math.MaxUint64), `[0,7,18446744073709551615]`},
	{tensor.Int8, `[-128,0,127]`, []byte{0x80, 0, 0x7f}, `[-128,0,127]`},
	{tensor.Int16, `[-32768,0,32767]`, le16(0x8000, 0, 0x7fff), `[-32768,0,32767]`},
	{tensor.Int32, `[-2147483648,0,2147483647]`, le32(0x80000000, 0, 0x7fffffff), `[-2147483648,0,2147483647]`},
	{tensor.Int64, `[-9223372036854775808,0,9223372036854775807]`, le64(1<<63, 0, 1<<63-1),
		`[-9223372036854775808,0,9223372036854775807]`},
	{tensor.FP16, `[1, -2.5, 65504]`, le16(0x3c00, 0xc100, 0x7bff), `[1.0,-2.5,65504.0]`},
	{tensor.BF16, `[1, -2.5, 3.140625]`, le16(0x3f80, 0xc020, 0x4049), `[1.0,-2.5,3.140625]`},
	{tensor.FP32, `[1.5, -0.1, 3e38]`, f32s(1.5, -0.1, 3e38), `[1.5,-0.10000000149011612,3.0000000054977558e38]`},
	{tensor.FP64, `[0.1, -1e300, 5]`, le64(math.Float64bits(0.1), math.Float64bits(-1e300), math.Float64bits(5)),
		`[0.1,-1e300,5.0]`},
	{tensor.Bytes, `["hello", "", "\u03c0\u00e9\n"]`,
		tensor.EncodeBytes([][]byte{[]byte("hello"), nil, []byte("πé\n")}), `["hello","","πé\n"]`},
}

func TestInferJSONDatatypes(t *testing.T) {
	for _, tc := range datatypeCases {
		t.Run(string(tc.dt), func(t *testing.T) {
			fake := newFakeService()
			h := NewHandler(fake, quiet)
			body := fmt.Sprintf(`{"id":"7","inputs":[{"name":"X","shape":[3],"datatype":"%s","data":%s}]}`, tc.dt, tc.jsonData)
			r := do(t, h, "POST", "/v2/models/simple/infer", []byte(body), nil)
			resp := parseInferResponse(t, r)

			in := fake.inferred().Inputs[0]
			if in.Name != "X" || in.DataType != tc.dt || !reflect.DeepEqual(in.Shape, []int64{3}) || !bytes.Equal(in.Data, tc.raw) {
				t.Errorf("service got %+v, want data %v", in, tc.raw)
			}
			want := fmt.Sprintf(`{"id":"7","model_name":"simple","model_version":"1","outputs":[{"name":"X","datatype":"%s","shape":[3],"data":%s}]}`,
				tc.dt, tc.jsonOut)
			if string(r.body) != want {
				t.Errorf("response\n%s\nwant\n%s", r.body, want)
			}
			if len(resp.binary) != 0 {
				t.Errorf("unexpected binary outputs")
			}
		})
	}
}

func TestInferNestedJSONData(t *testing.T) {
	fake := newFakeService()
	h := NewHandler(fake, quiet)
	body := `{"inputs":[{"name":"X","shape":[2,2],"datatype":"INT32","data":[[1,2],[3,4]]}]}`
	r := do(t, h, "POST", "/v2/models/simple/infer", []byte(body), nil)
	parseInferResponse(t, r)
	if got := fake.inferred().Inputs[0].Data; !bytes.Equal(got, le32(1, 2, 3, 4)) {
		t.Errorf("nested data decoded to %v", got)
	}
	if !strings.Contains(string(r.body), `"shape":[2,2],"data":[1,2,3,4]`) {
		t.Errorf("response %s", r.body)
	}
}

func TestInferBinaryDatatypes(t *testing.T) {
	for _, tc := range datatypeCases {
		t.Run(string(tc.dt), func(t *testing.T) {
			fake := newFakeService()
			h := NewHandler(fake, quiet)
			header := fmt.Sprintf(`{"inputs":[{"name":"X","shape":[3],"datatype":"%s","parameters":{"binary_data_size":%d}}],`+
				`"outputs":[{"name":"X","parameters":{"binary_data":true}}]}`, tc.dt, len(tc.raw))
			body, hdr := binaryRequest(t, header, tc.raw)
			resp := parseInferResponse(t, do(t, h, "POST", "/v2/models/simple/infer", body, hdr))
			if got := fake.inferred().Inputs[0].Data; !bytes.Equal(got, tc.raw) {
				t.Errorf("service got %v, want %v", got, tc.raw)
			}
			if got := resp.binary["X"]; !bytes.Equal(got, tc.raw) {
				t.Errorf("binary output %v, want %v", got, tc.raw)
			}
			if o := resp.Outputs[0]; o.Datatype != string(tc.dt) || o.Data != nil {
				t.Errorf("output %+v", o)
			}
		})
	}
}

func TestInferMixedInputsAndOutputs(t *testing.T) {
	fake := newFakeService()
	h := NewHandler(fake, quiet)
	a, c := f32s(1, 2), []byte{9, 8, 7}
	header := `{"inputs":[` +
		`{"name":"A","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},` +
		`{"name":"B","shape":[1],"datatype":"INT64","data":[42]},` +
		`{"name":"C","shape":[3],"datatype":"UINT8","parameters":{"binary_data_size":3}},` +
		`{"name":"E","shape":[0],"datatype":"FP32","parameters":{"binary_data_size":0}}],` +
		`"outputs":[{"name":"A","parameters":{"binary_data":true}},{"name":"B"},` +
		`{"name":"C","parameters":{"binary_data":true,"custom":3}},{"name":"E","parameters":{"binary_data":true}}]}`
	body, hdr := binaryRequest(t, header, a, c)
	resp := parseInferResponse(t, do(t, h, "POST", "/v2/models/simple/infer", body, hdr))

	req := fake.inferred()
	if len(req.Inputs) != 4 || !bytes.Equal(req.Inputs[0].Data, a) || !bytes.Equal(req.Inputs[2].Data, c) || len(req.Inputs[3].Data) != 0 {
		t.Fatalf("inputs %+v", req.Inputs)
	}
	wantOutputs := []infer.RequestedOutput{{Name: "A"}, {Name: "B"}, {Name: "C", Parameters: map[string]any{"custom": int64(3)}}, {Name: "E"}}
	if !reflect.DeepEqual(req.Outputs, wantOutputs) {
		t.Errorf("requested outputs %+v", req.Outputs)
	}
	if !bytes.Equal(resp.binary["A"], a) || !bytes.Equal(resp.binary["C"], c) {
		t.Errorf("binary outputs %v", resp.binary)
	}
	if got, ok := resp.binary["E"]; !ok || len(got) != 0 {
		t.Errorf("empty binary output E: %v %v", got, ok)
	}
	if string(resp.Outputs[1].Data) != "[42]" {
		t.Errorf("JSON output B: %s", resp.Outputs[1].Data)
	}
}

func TestInferBinaryDataOutputDefault(t *testing.T) {
	h := NewHandler(newFakeService(), quiet)
	body := `{"inputs":[{"name":"X","shape":[2],"datatype":"FP32","data":[1,2]}],"parameters":{"binary_data_output":true}}`
	resp := parseInferResponse(t, do(t, h, "POST", "/v2/models/simple/infer", []byte(body), nil))
	if !bytes.Equal(resp.binary["X"], f32s(1, 2)) {
		t.Errorf("binary_data_output did not make outputs binary: %+v", resp)
	}
}

func TestInferEmptyBinaryOutputIsJSON(t *testing.T) {
	// Triton sends the octet-stream form only when some binary output has
	// bytes; an empty one is just binary_data_size 0.
	h := NewHandler(newFakeService(), quiet)
	body := `{"inputs":[{"name":"X","shape":[0],"datatype":"FP32","data":[]}],"parameters":{"binary_data_output":true}}`
	r := do(t, h, "POST", "/v2/models/simple/infer", []byte(body), nil)
	if r.header.Get(headerLengthHeader) != "" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", r.header)
	}
	if !strings.Contains(string(r.body), `"parameters":{"binary_data_size":0}`) {
		t.Errorf("body %s", r.body)
	}
}

func TestInferParameters(t *testing.T) {
	fake := newFakeService()
	fake.inferFn = func(req *infer.Request) (*infer.Response, error) {
		return &infer.Response{Model: req.Model, Version: "3", Parameters: map[string]any{
			"b": true, "i": int64(-4), "s": "x\"y", "f": 0.25,
		}}, nil
	}
	h := NewHandler(fake, quiet)
	body := `{"id":"abc","inputs":[],"parameters":{"timeout":1500,"priority":2,"custom":"x","n":5,` +
		`"f":1.5,"flag":true,"sequence_id":7,"sequence_start":true}}`
	r := do(t, h, "POST", "/v2/models/simple/infer", []byte(body), nil)
	want := `{"id":"abc","model_name":"simple","model_version":"3","parameters":{"b":true,"f":0.25,"i":-4,"s":"x\"y"},"outputs":[]}`
	if r.status != 200 || string(r.body) != want {
		t.Errorf("response %d\n%s\nwant\n%s", r.status, r.body, want)
	}
	req := fake.inferred()
	if req.ID != "abc" || req.Timeout != 1500*time.Microsecond || req.Priority != 2 {
		t.Errorf("request %+v", req)
	}
	wantParams := map[string]any{"custom": "x", "n": int64(5), "f": 1.5, "flag": true, "sequence_id": int64(7), "sequence_start": true}
	if !reflect.DeepEqual(req.Parameters, wantParams) {
		t.Errorf("parameters %v, want %v", req.Parameters, wantParams)
	}
}

func TestInferErrors(t *testing.T) {
	type tc struct {
		name   string
		body   string
		blobs  [][]byte
		header map[string]string // nil: binary header added when blobs != nil
		status int
		want   string // substring of the error
	}
	fp := `"name":"X","shape":[2],"datatype":"FP32"`
	tests := []tc{
		{name: "malformed JSON", body: `{"inputs":[{"name":"X",]}`, status: 400, want: "malformed JSON in inference request at byte offset 24"},
		{name: "truncated JSON", body: `{"inputs":[`, status: 400, want: "malformed JSON"},
		{name: "not an object", body: `[1]`, status: 400, want: "must be an object"},
		{name: "no inputs", body: `{}`, status: 400, want: "no 'inputs'"},
		{name: "inputs not array", body: `{"inputs":{}}`, status: 400, want: "'inputs' must be an array"},
		{name: "missing name", body: `{"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]}`, status: 400, want: "input 0 has no 'name'"},
		{name: "missing shape", body: `{"inputs":[{"name":"X","datatype":"FP32","data":[1]}]}`, status: 400, want: "input 'X' has no 'shape'"},
		{name: "missing datatype", body: `{"inputs":[{"name":"X","shape":[1],"data":[1]}]}`, status: 400, want: "input 'X' has no 'datatype'"},
		{name: "unknown datatype", body: `{"inputs":[{"name":"X","shape":[1],"datatype":"FP8","data":[1]}]}`, status: 400, want: "input 'X' has unknown datatype 'FP8'"},
		{name: "shape of strings", body: `{"inputs":[{"name":"X","shape":["a"],"datatype":"FP32","data":[1]}]}`, status: 400, want: "'inputs.shape' must be an integer"},
		{name: "negative dim", body: `{"inputs":[{"name":"X","shape":[2,-1],"datatype":"FP32","data":[1,2]}]}`, status: 400, want: "input 'X' has invalid shape [2 -1]"},
		{name: "too few elements", body: `{"inputs":[{` + fp + `,"data":[1]}]}`, status: 400, want: "input 'X': 'data' has 1 elements, shape needs 2"},
		{name: "too many elements", body: `{"inputs":[{` + fp + `,"data":[[1,2],[3]]}]}`, status: 400, want: "input 'X': 'data' has 3 elements, shape needs 2"},
		{name: "huge shape", body: `{"inputs":[{"name":"X","shape":[1000000000000],"datatype":"FP64","data":[1]}]}`, status: 400, want: "'data' has 1 elements, shape needs 1000000000000"},
		{name: "overflowing shape", body: `{"inputs":[{"name":"X","shape":[4611686018427387904,4],"datatype":"FP64","data":[1]}]}`, status: 400, want: "too many elements"},
		{name: "uint8 out of range", body: `{"inputs":[{"name":"X","shape":[1],"datatype":"UINT8","data":[300]}]}`, status: 400, want: "input 'X': 'data' element 0: value 300 is out of range for UINT8"},
		{name: "int8 out of range", body: `{"inputs":[{"name":"X","shape":[2],"datatype":"INT8","data":[1,-129]}]}`, status: 400, want: "element 1: value -129 is out of range for INT8"},
		{name: "uint32 negative", body: `{"inputs":[{"name":"X","shape":[1],"datatype":"UINT32","data":[-1]}]}`, status: 400, want: "out of range for UINT32"},
		{name: "int fraction", body: `{"inputs":[{"name":"X","shape":[1],"datatype":"INT32","data":[1.5]}]}`, status: 400, want: "value 1.5 is not an integer"},
		{name: "fp32 overflow", body: `{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1e39]}]}`, status: 400, want: "out of range for FP32"},
		{name: "fp16 overflow", body: `{"inputs":[{"name":"X","shape":[1],"datatype":"FP16","data":[70000]}]}`, status: 400, want: "out of range for FP16"},
		{name: "bool as number", body: `{"inputs":[{"name":"X","shape":[1],"datatype":"BOOL","data":[1]}]}`, status: 400, want: "expected true or false"},
		{name: "string for number", body: `{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":["1"]}]}`, status: 400, want: "expected a number, got a string"},
		{name: "number for bytes", body: `{"inputs":[{"name":"X","shape":[1],"datatype":"BYTES","data":[1]}]}`, status: 400, want: "expected a string"},
		{name: "null element", body: `{"inputs":[{` + fp + `,"data":[1,null]}]}`, status: 400, want: "got null"},
		{name: "data not array", body: `{"inputs":[{` + fp + `,"data":5}]}`, status: 400, want: "'data' must be an array"},
		{name: "data null", body: `{"inputs":[{` + fp + `,"data":null}]}`, status: 400, want: "'data' must be an array"},
		{name: "deep nesting", body: `{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":` + strings.Repeat("[", 101) + "1" + strings.Repeat("]", 101) + `}]}`, status: 400, want: "nested deeper than 100"},
		{name: "data and binary", body: `{"inputs":[{` + fp + `,"data":[1,2],"parameters":{"binary_data_size":8}}]}`, status: 400, want: "must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But set 'data' 'binary_data_size'"},
		{name: "no data", body: `{"inputs":[{` + fp + `}]}`, status: 400, want: "But no field is set"},
		{name: "duplicate input", body: `{"inputs":[{` + fp + `,"data":[1,2]},{` + fp + `,"data":[1,2]}]}`, status: 400, want: "input 'X' is given more than once"},
		{name: "shared memory input", body: `{"inputs":[{` + fp + `,"parameters":{"shared_memory_region":"r0","shared_memory_byte_size":8}}]}`, status: 501, want: "shared memory is not supported on this endpoint"},
		{name: "binary truncated", body: `{"inputs":[{` + fp + `,"parameters":{"binary_data_size":8}}]}`, blobs: [][]byte{f32s(1)}, status: 400, want: "unexpected size for input 'X': binary_data_size is 8 bytes but only 4 bytes of binary data are left for model 'simple'"},
		{name: "binary without header", body: `{"inputs":[{` + fp + `,"parameters":{"binary_data_size":8}}]}`, header: map[string]string{}, status: 400, want: "unexpected size for input 'X'"},
		{name: "binary extra", body: `{"inputs":[{` + fp + `,"parameters":{"binary_data_size":8}}]}`, blobs: [][]byte{f32s(1, 2, 3)}, status: 400, want: "unexpected additional input data for model 'simple': 4 bytes"},
		{name: "binary size wrong for shape", body: `{"inputs":[{` + fp + `,"parameters":{"binary_data_size":6}}]}`, blobs: [][]byte{make([]byte, 6)}, status: 400, want: "has 6 bytes of data, shape [2] of FP32 needs 8"},
		{name: "binary size negative", body: `{"inputs":[{` + fp + `,"parameters":{"binary_data_size":-8}}]}`, blobs: [][]byte{}, status: 400, want: "Unable to parse 'binary_data_size'"},
		{name: "binary bytes past end", body: `{"inputs":[{"name":"S","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]}`, blobs: [][]byte{append(le32(10), 'a', 'b')}, status: 400, want: "input 'S': tensor \"S\": invalid tensor: BYTES element 0: length 10 runs past the end of the data"},
		{name: "binary bytes count", body: `{"inputs":[{"name":"S","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":5}}]}`, blobs: [][]byte{append(le32(1), 'a')}, status: 400, want: "BYTES element 1"},
		{name: "header length not a number", body: `{"inputs":[]}`, header: map[string]string{headerLengthHeader: "abc"}, status: 400, want: "Unable to parse Inference-Header-Content-Length, got: abc"},
		{name: "header length too large", body: `{"inputs":[]}`, header: map[string]string{headerLengthHeader: "100"}, status: 400, want: "inference header size should be in range (0, 13), got: 100"},
		{name: "header length negative", body: `{"inputs":[]}`, header: map[string]string{headerLengthHeader: "-1"}, status: 400, want: "inference header size"},
		{name: "triton_ parameter", body: `{"inputs":[],"parameters":{"triton_x":1}}`, status: 400, want: "reserved for Triton usage"},
		{name: "bad timeout", body: `{"inputs":[],"parameters":{"timeout":"soon"}}`, status: 400, want: "Unable to parse 'timeout'"},
		{name: "negative priority", body: `{"inputs":[],"parameters":{"priority":-1}}`, status: 400, want: "Unable to parse 'priority'"},
		{name: "bad binary_data_output", body: `{"inputs":[],"parameters":{"binary_data_output":1}}`, status: 400, want: "Unable to parse 'binary_data_output'"},
		{name: "object parameter", body: `{"inputs":[],"parameters":{"p":{}}}`, status: 400, want: "parameter 'p' has invalid type"},
		{name: "bad sequence_start", body: `{"inputs":[],"parameters":{"sequence_start":1}}`, status: 400, want: "Unable to parse 'sequence_start'"},
		{name: "id not string", body: `{"id":5,"inputs":[]}`, status: 400, want: "'id' must be a string"},
		{name: "output without name", body: `{"inputs":[],"outputs":[{}]}`, status: 400, want: "output 0 has no 'name'"},
		{name: "duplicate output", body: `{"inputs":[],"outputs":[{"name":"Y"},{"name":"Y"}]}`, status: 400, want: "output 'Y' is requested more than once"},
		{name: "bad binary_data", body: `{"inputs":[],"outputs":[{"name":"Y","parameters":{"binary_data":"yes"}}]}`, status: 400, want: "Unable to parse 'binary_data'"},
		{name: "bad classification", body: `{"inputs":[],"outputs":[{"name":"Y","parameters":{"classification":-2}}]}`, status: 400, want: "Unable to set 'classification'"},
		{name: "shared memory output", body: `{"inputs":[],"outputs":[{"name":"Y","parameters":{"shared_memory_region":"r","shared_memory_byte_size":4}}]}`, status: 501, want: "shared memory is not supported"},
		{name: "shared memory output without byte size", body: `{"inputs":[],"outputs":[{"name":"Y","parameters":{"shared_memory_region":"r"}}]}`, status: 400, want: "output 'Y' uses shared memory region 'r' but has no 'shared_memory_byte_size'"},
		{name: "unknown encoding", body: `{"inputs":[]}`, header: map[string]string{"Content-Encoding": "br"}, status: 415, want: "Unsupported compression type 'br'"},
		{name: "corrupt gzip", body: `{"inputs":[]}`, header: map[string]string{"Content-Encoding": "gzip"}, status: 400, want: "unable to decompress the request body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, hdr := []byte(tt.body), tt.header
			if tt.blobs != nil && hdr == nil {
				body, hdr = binaryRequest(t, tt.body, tt.blobs...)
			} else if tt.blobs != nil {
				for _, b := range tt.blobs {
					body = append(body, b...)
				}
			}
			fake := newFakeService()
			r := do(t, NewHandler(fake, quiet), "POST", "/v2/models/simple/infer", body, hdr)
			if r.status != tt.status {
				t.Errorf("status %d (%s), want %d", r.status, r.body, tt.status)
			}
			if msg := errorMessage(t, r); !strings.Contains(msg, tt.want) {
				t.Errorf("error %q\ndoes not contain %q", msg, tt.want)
			}
			if fake.inferred() != nil {
				t.Errorf("a bad request reached the service")
			}
		})
	}
}

func TestInferBadOutputFromService(t *testing.T) {
	fake := newFakeService()
	fake.inferFn = func(*infer.Request) (*infer.Response, error) {
		return &infer.Response{Outputs: []tensor.Tensor{{Name: "Y", DataType: tensor.FP32, Shape: []int64{2}, Data: []byte{1}}}}, nil
	}
	r := do(t, NewHandler(fake, quiet), "POST", "/v2/models/simple/infer", []byte(`{"inputs":[]}`), nil)
	if r.status != 500 || !strings.Contains(errorMessage(t, r), "model 'simple' produced a bad output") {
		t.Errorf("%d %s", r.status, r.body)
	}
}

func TestInferCompression(t *testing.T) {
	compressors := map[string]func(io.Writer) io.WriteCloser{
		"gzip":    func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) },
		"deflate": func(w io.Writer) io.WriteCloser { return zlib.NewWriter(w) },
	}
	decompressors := map[string]func(io.Reader) (io.Reader, error){
		"gzip":    func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) },
		"deflate": func(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) },
	}
	fake := newFakeService()
	srv := newTestServer(t, fake, quiet)
	data := f32s(1, 2, 3, 4)
	header := `{"inputs":[{"name":"X","shape":[4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"parameters":{"binary_data_output":true}}`
	for reqEnc, compress := range compressors {
		for _, accept := range []string{"gzip", "deflate", "identity", "deflate;q=0.5, gzip;q=0.8", "br"} {
			t.Run(reqEnc+"/"+accept, func(t *testing.T) {
				var body bytes.Buffer
				zw := compress(&body)
				zw.Write([]byte(header))
				zw.Write(data)
				zw.Close()
				req, _ := http.NewRequest("POST", srv.URL+"/v2/models/simple/infer", &body)
				req.Header.Set("Content-Encoding", reqEnc)
				req.Header.Set("Accept-Encoding", accept)
				req.Header.Set(headerLengthHeader, strconv.Itoa(len(header)))
				res, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				wantEnc := map[string]string{"gzip": "gzip", "deflate": "deflate", "deflate;q=0.5, gzip;q=0.8": "gzip"}[accept]
				if got := res.Header.Get("Content-Encoding"); got != wantEnc {
					t.Fatalf("Content-Encoding %q, want %q", got, wantEnc)
				}
				var rd io.Reader = res.Body
				if wantEnc != "" {
					if rd, err = decompressors[wantEnc](res.Body); err != nil {
						t.Fatal(err)
					}
				}
				b, err := io.ReadAll(rd)
				if err != nil {
					t.Fatal(err)
				}
				resp := parseInferResponse(t, response{status: res.StatusCode, header: res.Header, body: b})
				if !bytes.Equal(resp.binary["X"], data) {
					t.Errorf("output %v", resp.binary["X"])
				}
			})
		}
	}
}

func TestBodyLimits(t *testing.T) {
	opts := quiet
	opts.MaxRequestBytes = 1024
	h := NewHandler(newFakeService(), opts)
	big := []byte(`{"inputs":[],"id":"` + strings.Repeat("x", 2000) + `"}`)
	r := do(t, h, "POST", "/v2/models/simple/infer", big, nil)
	if r.status != 413 || !strings.Contains(errorMessage(t, r), "exceeds the maximum allowed size of 1024 bytes") {
		t.Errorf("large body: %d %s", r.status, r.body)
	}

	// A small gzip body that inflates past the limit.
	opts.MaxRequestBytes = 4096
	h = NewHandler(newFakeService(), opts)
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	if bomb.Len() > 4096 {
		t.Fatalf("bomb is %d bytes compressed", bomb.Len())
	}
	r = do(t, h, "POST", "/v2/models/simple/infer", bomb.Bytes(), map[string]string{"Content-Encoding": "gzip"})
	if r.status != 413 {
		t.Errorf("gzip bomb: %d %s", r.status, r.body)
	}

	// A JSON input whose decoded size passes the limit.
	opts.MaxRequestBytes = 300
	h = NewHandler(newFakeService(), opts)
	body := `{"inputs":[{"name":"X","shape":[40],"datatype":"FP64","data":[` + strings.Repeat("1,", 39) + `1]}]}`
	r = do(t, h, "POST", "/v2/models/simple/infer", []byte(body), nil)
	if r.status != 400 || !strings.Contains(errorMessage(t, r), "more than the limit of 300") {
		t.Errorf("decoded limit: %d %s", r.status, r.body)
	}
}

// TestClassificationParameter checks that "classification" reaches the
// service as an int64 (the service computes it for both protocols) and that
// bad values are refused here.
func TestClassificationParameter(t *testing.T) {
	svc := newFakeService()
	h := NewHandler(svc, quiet)
	body := `{"inputs":[{"name":"P","shape":[1,3],"datatype":"UINT8","data":[[2,9,9]]}],"outputs":[{"name":"P","parameters":{"classification":3,"binary_data":true}}]}`
	if r := do(t, h, "POST", "/v2/models/simple/infer", []byte(body), nil); r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	svc.mu.Lock()
	got := svc.lastInfer.Outputs
	svc.mu.Unlock()
	if len(got) != 1 || got[0].Parameters["classification"] != int64(3) {
		t.Fatalf("requested outputs %+v", got)
	}
	if _, ok := got[0].Parameters["binary_data"]; ok {
		t.Fatal("binary_data is the front end's business and must not reach the service")
	}
	for _, v := range []string{"-2", "1.5", `"3"`} {
		body := `{"inputs":[],"outputs":[{"name":"P","parameters":{"classification":` + v + `}}]}`
		r := do(t, h, "POST", "/v2/models/simple/infer", []byte(body), nil)
		if r.status != 400 || !strings.Contains(errorMessage(t, r), "Unable to set 'classification'") {
			t.Errorf("classification %s: %d %s", v, r.status, r.body)
		}
	}
}

func TestRawInput(t *testing.T) {
	fake := newFakeService()
	fake.models["two"] = &fakeModel{config: &pb.ModelConfig{Input: []*pb.ModelInput{{Name: "A"}, {Name: "B"}}}}
	h := NewHandler(fake, quiet)
	raw := map[string]string{headerLengthHeader: "0"}

	data := f32s(1, 2, 3, 4)
	resp := parseInferResponse(t, do(t, h, "POST", "/v2/models/simple/infer", data, raw))
	in := fake.inferred().Inputs[0]
	if in.Name != "INPUT0" || in.DataType != tensor.FP32 || !reflect.DeepEqual(in.Shape, []int64{1, 4}) || !bytes.Equal(in.Data, data) {
		t.Errorf("raw input %+v", in)
	}
	if !bytes.Equal(resp.binary["INPUT0"], data) {
		t.Errorf("raw request outputs must default to binary: %+v", resp)
	}

	parseInferResponse(t, do(t, h, "POST", "/v2/models/unbatched/infer", []byte("some text"), raw))
	in = fake.inferred().Inputs[0]
	if in.DataType != tensor.Bytes || !reflect.DeepEqual(in.Shape, []int64{1}) || !bytes.Equal(in.Data, tensor.EncodeBytes([][]byte{[]byte("some text")})) {
		t.Errorf("raw BYTES input %+v", in)
	}

	for model, want := range map[string]string{
		"two":    "Raw request must only have 1 input",
		"simple": "has 6 bytes of data",
	} {
		r := do(t, h, "POST", "/v2/models/"+model+"/infer", make([]byte, 6), raw)
		if r.status != 400 || !strings.Contains(errorMessage(t, r), want) {
			t.Errorf("%s: %d %s", model, r.status, r.body)
		}
	}
}

func TestInferLargeBinaryThroughServer(t *testing.T) {
	fake := newFakeService()
	srv := newTestServer(t, fake, quiet)
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	header := fmt.Sprintf(`{"inputs":[{"name":"X","shape":[%d],"datatype":"UINT8","parameters":{"binary_data_size":%d}}],"parameters":{"binary_data_output":true}}`,
		len(data), len(data))
	body, hdr := binaryRequest(t, header, data)
	req, _ := http.NewRequest("POST", srv.URL+"/v2/models/simple/infer", bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept-Encoding", "identity") // else Go's client asks for gzip
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	resp := parseInferResponse(t, response{status: res.StatusCode, header: res.Header, body: b})
	if !bytes.Equal(resp.binary["X"], data) {
		t.Error("8 MiB binary tensor did not round-trip")
	}
	if res.ContentLength != int64(len(b)) {
		t.Errorf("Content-Length %d, body %d", res.ContentLength, len(b))
	}
}
