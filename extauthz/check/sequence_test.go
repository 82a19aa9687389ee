package check

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
)

// seqInfer is a ModelInferRequest as tritonclient sends one step of a
// sequence (parameters before the inputs and their raw contents).
func seqInfer(model string, id *inference.InferParameter, extra map[string]*inference.InferParameter) *inference.ModelInferRequest {
	params := map[string]*inference.InferParameter{
		"sequence_start": {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: true}},
		"sequence_end":   {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: false}},
	}
	if id != nil {
		params["sequence_id"] = id
	}
	for k, v := range extra {
		params[k] = v
	}
	return &inference.ModelInferRequest{
		ModelName: model, Id: "step-1", Parameters: params,
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "INPUT", Datatype: "INT32", Shape: []int64{1, 1}}},
		RawInputContents: [][]byte{make([]byte, 4096)},
	}
}

func intParam(v int64) *inference.InferParameter {
	return &inference.InferParameter{ParameterChoice: &inference.InferParameter_Int64Param{Int64Param: v}}
}

func uintParam(v uint64) *inference.InferParameter {
	return &inference.InferParameter{ParameterChoice: &inference.InferParameter_Uint64Param{Uint64Param: v}}
}

func strParam(v string) *inference.InferParameter {
	return &inference.InferParameter{ParameterChoice: &inference.InferParameter_StringParam{StringParam: v}}
}

func TestReadGRPCBodySequence(t *testing.T) {
	marshal := func(m proto.Message) []byte {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	long := strings.Repeat("x", 200)
	tests := []struct {
		name  string
		req   *inference.ModelInferRequest
		limit int // 0: the whole message
		want  string
	}{
		{"int64", seqInfer("simple_sequence", intParam(1000), nil), 256, "1000"},
		{"uint64", seqInfer("simple_sequence", uintParam(1<<63+5), nil), 256, "9223372036854775813"},
		{"string", seqInfer("simple_sequence", strParam("corr-1/a b"), nil), 256, "s:corr-1%2Fa%20b"},
		{"long string hashed", seqInfer("simple_sequence", strParam(long), nil), 0, wire.SequenceHeaderValue(0, long)},
		{"zero: no sequence", seqInfer("simple_sequence", intParam(0), nil), 256, ""},
		{"empty string: no sequence", seqInfer("simple_sequence", strParam(""), nil), 256, ""},
		{"negative: the worker refuses", seqInfer("simple_sequence", intParam(-3), nil), 256, ""},
		{"bool: the worker refuses", seqInfer("simple_sequence", &inference.InferParameter{ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: true}}, nil), 256, ""},
		{"none", seqInfer("simple_sequence", nil, nil), 256, ""},
		{"cut before the parameters", seqInfer("simple_sequence", intParam(7), nil), 30, ""},
		{"many parameters, whole message", seqInfer("m", intParam(7), map[string]*inference.InferParameter{
			"a": strParam(strings.Repeat("a", 100)), "b": strParam(strings.Repeat("b", 100)),
		}), 0, "7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := readGRPCBody(frame(marshal(tc.req), tc.limit), true)
			if err != nil {
				t.Fatal(err)
			}
			if m.name != tc.req.ModelName && tc.limit >= 30 {
				t.Fatalf("model %q", m.name)
			}
			if m.sequence != tc.want {
				t.Fatalf("sequence %q, want %q", m.sequence, tc.want)
			}
		})
	}

	t.Run("not read without params", func(t *testing.T) {
		m, err := readGRPCBody(frame(marshal(seqInfer("m", intParam(9), nil)), 0), false)
		if err != nil || m.sequence != "" {
			t.Fatalf("%+v, %v", m, err)
		}
	})
	t.Run("repeated key keeps the last, as protobuf", func(t *testing.T) {
		entry := func(v int64) []byte {
			val := protowire.AppendTag(nil, fieldInt64Param, protowire.VarintType)
			val = protowire.AppendVarint(val, uint64(v))
			e := protowire.AppendTag(nil, fieldEntryKey, protowire.BytesType)
			e = protowire.AppendString(e, "sequence_id")
			e = protowire.AppendTag(e, fieldEntryValue, protowire.BytesType)
			return protowire.AppendBytes(e, val)
		}
		msg := protowire.AppendTag(nil, 1, protowire.BytesType)
		msg = protowire.AppendString(msg, "m")
		for _, v := range []int64{3, 4} {
			msg = protowire.AppendTag(msg, fieldParameters, protowire.BytesType)
			msg = protowire.AppendBytes(msg, entry(v))
		}
		var req inference.ModelInferRequest
		if err := proto.Unmarshal(msg, &req); err != nil {
			t.Fatal(err)
		}
		m, err := readGRPCBody(frame(msg, 0), true)
		if err != nil {
			t.Fatal(err)
		}
		if want := wire.SequenceHeaderValue(uint64(req.Parameters["sequence_id"].GetInt64Param()), ""); m.sequence != want || want != "4" {
			t.Fatalf("sequence %q, protobuf says %q", m.sequence, want)
		}
	})
	t.Run("malformed parameters", func(t *testing.T) {
		for name, msg := range map[string][]byte{
			"varint field 4": protowire.AppendVarint(protowire.AppendTag(nil, fieldParameters, protowire.VarintType), 1),
			"entry key not bytes": protowire.AppendBytes(protowire.AppendTag(nil, fieldParameters, protowire.BytesType),
				protowire.AppendVarint(protowire.AppendTag(nil, fieldEntryKey, protowire.VarintType), 1)),
			"entry cut": protowire.AppendBytes(protowire.AppendTag(nil, fieldParameters, protowire.BytesType), []byte{0x0a, 0x05, 's'}),
			"string param as varint": protowire.AppendBytes(protowire.AppendTag(nil, fieldParameters, protowire.BytesType),
				protowire.AppendBytes(protowire.AppendString(protowire.AppendTag(nil, fieldEntryKey, protowire.BytesType), "sequence_id"),
					protowire.AppendVarint(protowire.AppendTag(nil, fieldStringParam, protowire.VarintType), 1))),
		} {
			if _, err := readGRPCBody(frame(msg, 0), true); err != errMalformedBody {
				t.Errorf("%s: %v, want errMalformedBody", name, err)
			}
		}
	})
}

func TestSequenceFromJSONBody(t *testing.T) {
	head := `{"id":"1","inputs":[{"name":"INPUT","shape":[1,1],"datatype":"INT32","parameters":{"binary_data_size":4}}],` +
		`"outputs":[{"name":"OUTPUT","parameters":{"binary_data":true}}],"parameters":{"sequence_id":1000,"sequence_start":true,"sequence_end":false}}`
	tests := []struct {
		name, body, want string
	}{
		{"tritonclient, binary tensors after the head", head + "\x01\x00\x00\x00", "1000"},
		{"string id", `{"parameters":{"sequence_id":"abc"},"inputs":[]}`, "s:abc"},
		{"string id with escapes", `{"parameters": {"sequence_id": "a\"b\u00e9"} }`, wire.SequenceHeaderValue(0, "a\"b\u00e9")},
		{"escaped key", `{"param\u0065ters":{"sequence_id":5}}`, "5"},
		{"whitespace", " {\n \"parameters\" :\t{ \"sequence_id\" : 12 } }", "12"},
		{"JSON tensor data skipped", `{"inputs":[{"name":"x","data":[1,2,3,"]}{",[4]]}],"parameters":{"sequence_id":8}}`, "8"},
		{"last parameters wins", `{"parameters":{"sequence_id":1},"parameters":{"sequence_id":2}}`, "2"},
		{"zero", `{"parameters":{"sequence_id":0}}`, ""},
		{"negative", `{"parameters":{"sequence_id":-1}}`, ""},
		{"fraction", `{"parameters":{"sequence_id":1.5}}`, ""},
		{"too large", `{"parameters":{"sequence_id":18446744073709551616}}`, ""},
		{"bool", `{"parameters":{"sequence_id":true}}`, ""},
		{"no parameters", `{"inputs":[]}`, ""},
		{"nested parameters are not the request's", `{"inputs":[{"parameters":{"sequence_id":3}}]}`, ""},
		{"cut short before the parameters", head[:150], ""},
		{"cut short inside the parameters", head[:len(head)-20], ""},
		{"not an object", `[{"parameters":{"sequence_id":3}}]`, ""},
		{"not JSON", "\x00\x01garbage", ""},
		{"empty", "", ""},
		{"malformed parameters", `{"parameters":{"sequence_id":}}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sequenceFromJSONBody([]byte(tc.body)); got != tc.want {
				t.Fatalf("%q, want %q", got, tc.want)
			}
		})
	}

	// tritonclient's request_compression_algorithm: gzip and deflate
	// (zlib), whole and cut short after the head.
	noise := make([]byte, 10000)
	_, _ = rand.Read(noise)
	long := head[:len(head)-1] + `,"pad":"` + hex.EncodeToString(noise) + `"}`
	for name, compress := range map[string]func([]byte) []byte{
		"gzip": func(b []byte) []byte {
			var out bytes.Buffer
			w := gzip.NewWriter(&out)
			_, _ = w.Write(b)
			_ = w.Close()
			return out.Bytes()
		},
		"deflate": func(b []byte) []byte {
			var out bytes.Buffer
			w := zlib.NewWriter(&out)
			_, _ = w.Write(b)
			_ = w.Close()
			return out.Bytes()
		},
	} {
		t.Run(name, func(t *testing.T) {
			if got := sequenceFromJSONBody(compress([]byte(head))); got != "1000" {
				t.Fatalf("whole: %q", got)
			}
			if z := compress([]byte(long)); sequenceFromJSONBody(z[:len(z)/2]) != "1000" {
				t.Fatalf("cut short after the parameters: %q", sequenceFromJSONBody(z[:len(z)/2]))
			}
			if got := sequenceFromJSONBody(compress([]byte(head))[:5]); got != "" {
				t.Fatalf("cut in the header: %q", got)
			}
		})
	}
}

// FuzzSequenceFromJSONBody: no panic, and on a body that is one whole JSON
// object Go's decoder (the worker's) reads the same sequence_id.
func FuzzSequenceFromJSONBody(f *testing.F) {
	for _, s := range []string{
		`{"inputs":[{"name":"INPUT","shape":[1],"datatype":"INT32","data":[1]}],"parameters":{"sequence_id":7,"sequence_start":true}}`,
		`{"parameters":{"sequence_id":"abc"}}`, `{"parameters":{"sequence_id":"\u00e9\\\""}}`, `{"a":"\\"}`, `{"a":[[[{}]]]}`, `{`, ``, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := sequenceFromJSONBody(body)
		var req struct {
			Parameters map[string]json.RawMessage `json:"parameters"`
		}
		if json.Unmarshal(body, &req) != nil {
			return
		}
		raw, ok := req.Parameters["sequence_id"]
		want := ""
		if ok {
			want, _ = sequenceFromParameters(mustMarshal(t, map[string]json.RawMessage{"sequence_id": raw}))
		}
		if got != want {
			t.Fatalf("read %q, encoding/json reads %q", got, want)
		}
	})
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReadGRPCBodySequence: no panic, and on a whole message the protobuf
// runtime reads the same sequence_id.
func FuzzReadGRPCBodySequence(f *testing.F) {
	for _, m := range []*inference.ModelInferRequest{
		seqInfer("s", intParam(5), nil), seqInfer("s", strParam("id"), nil), seqInfer("s", uintParam(9), nil), seqInfer("s", nil, nil),
	} {
		m.RawInputContents = [][]byte{{1, 2, 3, 4}}
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame(b, 0))
		f.Add(frame(b, 100))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := readGRPCBody(body, true)
		if err != nil || !m.complete {
			return
		}
		n := int(body[1])<<24 | int(body[2])<<16 | int(body[3])<<8 | int(body[4])
		var req inference.ModelInferRequest
		if proto.Unmarshal(body[5:5+n], &req) != nil {
			return
		}
		want := ""
		switch p := req.GetParameters()["sequence_id"].GetParameterChoice().(type) {
		case *inference.InferParameter_Int64Param:
			if p.Int64Param > 0 {
				want = wire.SequenceHeaderValue(uint64(p.Int64Param), "")
			}
		case *inference.InferParameter_Uint64Param:
			want = wire.SequenceHeaderValue(p.Uint64Param, "")
		case *inference.InferParameter_StringParam:
			want = wire.SequenceHeaderValue(0, p.StringParam)
		}
		if m.sequence != want {
			t.Fatalf("read %q, protobuf reads %q", m.sequence, want)
		}
	})
}

// The whole Check: ModelInfer and REST infer of a sequence get
// x-helix-sequence (and a client-sent one is removed when none is read);
// generate and generate_stream are inference; Triton's shared-memory calls
// are refused with FAILED_PRECONDITION / 400 and the reason.
func TestCheckSequenceAndSharedMemory(t *testing.T) {
	e := newEnv(t)
	all := e.mint(t, claims([]string{"models:infer", "models:read"}, []string{"*"}))
	only := e.mint(t, claims([]string{"models:simple_sequence:infer"}, []string{"simple_sequence"}))
	run := func(t *testing.T, req *authv3.CheckRequest) result {
		t.Helper()
		resp, err := e.svc.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return decode(t, resp)
	}
	withBody := func(req *authv3.CheckRequest, body string) *authv3.CheckRequest {
		req.Attributes.Request.Http.RawBody = []byte(body)
		return req
	}

	for _, tc := range []struct {
		name string
		req  *authv3.CheckRequest
		want string
	}{
		{"gRPC ModelInfer", grpcReq("ModelInfer", marshalFrame(t, seqInfer("simple_sequence", intParam(42), nil))[:256], bearerHdr(only)), "42"},
		{"gRPC string id", grpcReq("ModelInfer", marshalFrame(t, seqInfer("simple_sequence", strParam("s1"), nil)), bearerHdr(all)), "s:s1"},
		{"gRPC without a sequence", grpcReq("ModelInfer", marshalFrame(t, seqInfer("simple_sequence", nil, nil)), bearerHdr(all)), ""},
		{"client-sent header is no sequence", grpcReq("ModelInfer", marshalFrame(t, seqInfer("simple_sequence", nil, nil)),
			map[string]string{"authorization": "Bearer " + all, wire.HeaderSequence: "7"}), ""},
		{"REST infer", withBody(restReq("POST", "/v2/models/simple_sequence/infer", bearerHdr(only)), `{"inputs":[],"parameters":{"sequence_id":42}}`), "42"},
		{"REST infer of a version", withBody(restReq("POST", "/v2/models/simple_sequence/versions/1/infer", bearerHdr(all)), `{"parameters":{"sequence_id":"s1"}}`), "s:s1"},
		{"REST generate", withBody(restReq("POST", "/v2/models/simple_sequence/generate", bearerHdr(all)), `{"INPUT":[1],"parameters":{"sequence_id":3}}`), "3"},
		{"REST generate_stream", restReq("POST", "/v2/models/simple_sequence/generate_stream", bearerHdr(all)), ""},
		{"REST metadata ignores a body", withBody(restReq("GET", "/v2/models/simple_sequence", bearerHdr(all)), `{"parameters":{"sequence_id":3}}`), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.req)
			if !r.ok {
				t.Fatalf("denied %d %q", r.http, r.body)
			}
			if r.headers[wire.HeaderModel] != "simple_sequence" {
				t.Fatalf("x-helix-model %q", r.headers[wire.HeaderModel])
			}
			if got := r.headers[wire.HeaderSequence]; got != tc.want {
				t.Fatalf("%s %q, want %q", wire.HeaderSequence, got, tc.want)
			}
			if _, sent := tc.req.Attributes.Request.Http.Headers[wire.HeaderSequence]; sent && tc.want == "" {
				if !strings.Contains(strings.Join(r.remove, ","), wire.HeaderSequence) {
					t.Fatalf("client-sent %s not removed: %v", wire.HeaderSequence, r.remove)
				}
			}
		})
	}

	t.Run("generate needs the model's inference scope", func(t *testing.T) {
		read := e.mint(t, claims([]string{"models:read"}, []string{"*"}))
		for _, p := range []string{"generate", "generate_stream"} {
			if r := run(t, restReq("POST", "/v2/models/simple_sequence/"+p, bearerHdr(read))); r.http != 403 {
				t.Errorf("%s with models:read: %d", p, r.http)
			}
		}
	})

	wantBody := `{"error":"` + wire.SharedMemoryThroughGateway + `"}`
	for _, p := range []string{
		"/v2/systemsharedmemory/status", "/v2/systemsharedmemory/region/input0/register",
		"/v2/systemsharedmemory/unregister", "/v2/cudasharedmemory/region/x/status", "/v2/cudasharedmemory/unregister",
	} {
		t.Run("REST "+p, func(t *testing.T) {
			r := run(t, restReq("POST", p, bearerHdr(all)))
			if r.http != 400 || r.grpc != codes.FailedPrecondition || r.body != wantBody || r.headers["content-type"] != "application/json" {
				t.Fatalf("%d %v %q %v", r.http, r.grpc, r.body, r.headers)
			}
		})
	}
	for _, rpc := range []string{
		"SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
		"CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister",
	} {
		t.Run("gRPC "+rpc, func(t *testing.T) {
			r := run(t, grpcReq(rpc, marshalFrame(t, &inference.SystemSharedMemoryRegisterRequest{Name: "r", Key: "/k", ByteSize: 64}), bearerHdr(all)))
			if r.http != 400 || r.headers["grpc-status"] != "9" || r.headers["grpc-message"] != wire.SharedMemoryThroughGateway {
				t.Fatalf("%d %v", r.http, r.headers)
			}
		})
	}
	t.Run("a credential is still needed", func(t *testing.T) {
		if r := run(t, restReq("POST", "/v2/systemsharedmemory/status", nil)); r.http != 401 {
			t.Fatalf("%d", r.http)
		}
	})
}
