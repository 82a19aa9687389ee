package httpapi

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

// streamFake adds infer.StreamService to fakeService: model "repeat" is
// decoupled (streamFn answers it), the others answer once through Infer.
type streamFake struct {
	*fakeService
	streamFn func(ctx context.Context, req *infer.Request, send func(*infer.Response, bool) error) error
}

func (s *streamFake) InferStream(ctx context.Context, req *infer.Request, send func(*infer.Response, bool) error) error {
	if req.Model == "repeat" {
		return s.streamFn(ctx, req, send)
	}
	resp, err := s.Infer(ctx, req)
	if err != nil {
		return err
	}
	return send(resp, true)
}

func i32(name string, vals ...int32) tensor.Tensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	return tensor.Tensor{Name: name, DataType: tensor.Int32, Shape: []int64{int64(len(vals))}, Data: b}
}

// repeatConfig is the repeat_int32 model's configuration.
var repeatConfig = &pb.ModelConfig{
	Name: "repeat",
	Input: []*pb.ModelInput{
		{Name: "IN", DataType: pb.DataType_TYPE_INT32, Dims: []int64{-1}},
		{Name: "DELAY", DataType: pb.DataType_TYPE_UINT32, Dims: []int64{-1}},
		{Name: "WAIT", DataType: pb.DataType_TYPE_UINT32, Dims: []int64{1}},
	},
	Output: []*pb.ModelOutput{{Name: "OUT", DataType: pb.DataType_TYPE_INT32, Dims: []int64{1}}},
}

// newStreamFake serves "repeat", which answers OUT = IN[i] for each i and
// then an empty final response.
func newStreamFake() *streamFake {
	f := newFakeService()
	f.models["repeat"] = &fakeModel{ready: true, config: repeatConfig}
	f.models["text"] = &fakeModel{ready: true, config: &pb.ModelConfig{
		Name: "text", MaxBatchSize: 4,
		Input: []*pb.ModelInput{{Name: "text_input", DataType: pb.DataType_TYPE_STRING, Dims: []int64{1}}},
	}}
	s := &streamFake{fakeService: f}
	s.streamFn = func(ctx context.Context, req *infer.Request, send func(*infer.Response, bool) error) error {
		in := req.Inputs[0]
		for i := 0; i+4 <= len(in.Data); i += 4 {
			v := int32(binary.LittleEndian.Uint32(in.Data[i:]))
			if err := send(&infer.Response{Model: req.Model, Version: "1", Outputs: []tensor.Tensor{i32("OUT", v)}}, false); err != nil {
				return err
			}
		}
		return send(&infer.Response{Model: req.Model, Version: "1"}, true)
	}
	return s
}

func TestGenerate(t *testing.T) {
	fake := newStreamFake()
	h := NewHandler(fake, quiet)
	r := do(t, h, "POST", "/v2/models/repeat/versions/01/generate", []byte(`{"IN": [7], "DELAY": [0], "WAIT": 0, "parameters": {"temperature": 0.5}, "stream": false}`), nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %q: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if string(r.body) != `{"model_name":"repeat","model_version":"1","OUT":7}` {
		t.Errorf("body %s", r.body)
	}
	req := fake.inferred()
	if req != nil {
		t.Errorf("a decoupled model went through Infer")
	}

	// The request as the model saw it: shapes from the config, parameters.
	fake.streamFn = func(_ context.Context, req *infer.Request, send func(*infer.Response, bool) error) error {
		if req.Version != "1" || len(req.Inputs) != 3 || req.Inputs[0].Shape[0] != 3 || req.Inputs[2].Shape[0] != 1 ||
			req.Parameters["temperature"] != 0.5 || req.Parameters["stream"] != false {
			t.Errorf("request %+v", req)
		}
		return send(&infer.Response{Model: req.Model, Version: "1", Outputs: []tensor.Tensor{i32("OUT", 1, 2)}}, true)
	}
	r = do(t, h, "POST", "/v2/models/repeat/versions/1/generate", []byte(`{"IN": [1, 2, 3], "DELAY": [0, 0, 0], "WAIT": [0], "parameters": {"temperature": 0.5}, "stream": false}`), nil)
	if r.status != 200 || string(r.body) != `{"model_name":"repeat","model_version":"1","OUT":[1,2]}` {
		t.Errorf("status %d body %s", r.status, r.body)
	}

	// A model that is not decoupled; BYTES input, batch of one.
	r = do(t, h, "POST", "/v2/models/text/generate", []byte(`{"text_input": "hello"}`), nil)
	if r.status != 200 || string(r.body) != `{"model_name":"text","model_version":"1","text_input":"hello"}` {
		t.Errorf("text: status %d body %s", r.status, r.body)
	}
	if in := fake.inferred().Inputs[0]; len(in.Shape) != 2 || in.Shape[0] != 1 || in.Shape[1] != 1 || in.DataType != tensor.Bytes {
		t.Errorf("text_input = %+v", in)
	}
}

func (s *streamFake) ModelDecoupled(model, _ string) bool { return model == "repeat" }

// TestInferOnDecoupledModel checks /infer's refusal of a decoupled model
// in Triton's HTTP words.
func TestInferOnDecoupledModel(t *testing.T) {
	fake := newStreamFake()
	fake.inferFn = func(req *infer.Request) (*infer.Response, error) {
		return nil, infer.Errorf(infer.CodeUnimplemented, "ModelInfer RPC doesn't support models with decoupled transaction policy")
	}
	h := NewHandler(fake, quiet)
	body := []byte(`{"inputs": [{"name": "IN", "datatype": "INT32", "shape": [1], "data": [1]}]}`)
	r := do(t, h, "POST", "/v2/models/repeat/infer", body, nil)
	if msg := errorMessage(t, r); r.status != 501 || !strings.HasPrefix(msg, "HTTP end point doesn't support models with decoupled transaction policy") {
		t.Errorf("status %d error %q", r.status, msg)
	}
	// Another model's UNIMPLEMENTED is left alone.
	fake.models["plain"] = &fakeModel{ready: true, config: &pb.ModelConfig{Name: "plain"}}
	r = do(t, h, "POST", "/v2/models/plain/infer", body, nil)
	if msg := errorMessage(t, r); !strings.HasPrefix(msg, "ModelInfer RPC") {
		t.Errorf("plain: error %q", msg)
	}
}

func TestGenerateErrors(t *testing.T) {
	h := NewHandler(newStreamFake(), quiet)
	tests := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"several responses", "repeat/generate", `{"IN": [1, 2], "DELAY": [0, 0], "WAIT": 0}`, 400, "more than one response; use POST /v2/models/repeat/generate_stream"},
		{"no response", "repeat/generate", `{"IN": [], "DELAY": [], "WAIT": 0}`, 400, "no response"},
		{"not an object", "repeat/generate", `[1]`, 400, "must be a JSON object"},
		{"bad json", "repeat/generate_stream", `{"IN": `, 400, "must be a JSON object"},
		{"missing input", "repeat/generate", `{"IN": [1], "DELAY": [0]}`, 400, "lacks input 'WAIT'"},
		{"wrong count", "repeat/generate", `{"IN": [1], "DELAY": [0], "WAIT": [1, 2]}`, 400, "input 'WAIT' has 2 elements, which do not fit its dims [1]"},
		{"wrong type", "repeat/generate", `{"IN": ["a"], "DELAY": [0], "WAIT": 0}`, 400, "input 'IN'"},
		{"negative uint", "repeat/generate_stream", `{"IN": [1], "DELAY": [-1], "WAIT": 0}`, 400, "input 'DELAY'"},
		{"object value", "repeat/generate", `{"IN": {"a": 1}, "DELAY": [0], "WAIT": 0}`, 400, "holds an object"},
		{"object extra key", "repeat/generate", `{"IN": [1], "DELAY": [0], "WAIT": 0, "x": {}}`, 400, "key 'x' is not an input of model 'repeat'"},
		{"bad parameters", "repeat/generate", `{"IN": [1], "DELAY": [0], "WAIT": 0, "parameters": 3}`, 400, "'parameters'"},
		{"reserved parameter", "repeat/generate", `{"IN": [1], "DELAY": [0], "WAIT": 0, "parameters": {"triton_x": 1}}`, 400, "reserved"},
		{"unknown model", "nope/generate", `{}`, 404, "unknown model"},
		{"unknown model stream", "nope/generate_stream", `{}`, 404, "unknown model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, h, "POST", "/v2/models/"+tt.path, []byte(tt.body), nil)
			if r.status != tt.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tt.status)
			}
			if msg := errorMessage(t, r); !strings.Contains(msg, tt.want) {
				t.Errorf("error %q, want it to contain %q", msg, tt.want)
			}
		})
	}
	if r := do(t, h, "GET", "/v2/models/repeat/generate", nil, nil); r.status != 405 || r.header.Get("Allow") != "POST" {
		t.Errorf("GET generate: %d, Allow %q", r.status, r.header.Get("Allow"))
	}
}

// readEvents reads the data of every SSE event of body.
func readEvents(t *testing.T, body io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, data)
		} else if line != "" {
			t.Errorf("unexpected line %q", line)
		}
	}
	return out
}

func TestGenerateStream(t *testing.T) {
	fake := newStreamFake()
	srv := newTestServer(t, fake.fakeService, quiet)
	srv.Config.Handler = NewHandler(fake, quiet)
	post := func(path, body string) *http.Response {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := post("/v2/models/repeat/generate_stream", `{"IN": [4, 5, 6], "DELAY": [0, 0, 0], "WAIT": 0}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	got := readEvents(t, resp.Body)
	want := []string{
		`{"model_name":"repeat","model_version":"1","OUT":4}`,
		`{"model_name":"repeat","model_version":"1","OUT":5}`,
		`{"model_name":"repeat","model_version":"1","OUT":6}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events %q, want %q", got, want)
	}

	// An error after the first event is an error event.
	fake.streamFn = func(_ context.Context, req *infer.Request, send func(*infer.Response, bool) error) error {
		if err := send(&infer.Response{Model: req.Model, Version: "1", Outputs: []tensor.Tensor{i32("OUT", 1)}}, false); err != nil {
			return err
		}
		return infer.Errorf(infer.CodeInternal, "model 'repeat' version 1 failed to execute: boom")
	}
	got = readEvents(t, post("/v2/models/repeat/generate_stream", `{"IN": [1], "DELAY": [0], "WAIT": 0}`).Body)
	if len(got) != 2 {
		t.Fatalf("events %q, want a response and an error", got)
	}
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(got[1]), &e); err != nil || e.Error != "model 'repeat' version 1 failed to execute: boom" {
		t.Errorf("error event %q (%v)", got[1], err)
	}

	// An error before any event is a JSON error with its status.
	fake.streamFn = func(context.Context, *infer.Request, func(*infer.Response, bool) error) error {
		return infer.Errorf(infer.CodeResourceExhausted, "model 'repeat' queue is full")
	}
	resp = post("/v2/models/repeat/generate_stream", `{"IN": [1], "DELAY": [0], "WAIT": 0}`)
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 429 || !strings.Contains(string(b), "queue is full") {
		t.Errorf("status %d body %s, want 429 and the error", resp.StatusCode, b)
	}

	// A model that is not decoupled streams its one response.
	got = readEvents(t, post("/v2/models/text/generate_stream", `{"text_input": ["hi"]}`).Body)
	if len(got) != 1 || got[0] != `{"model_name":"text","model_version":"1","text_input":"hi"}` {
		t.Errorf("text events %q", got)
	}
}

// TestGenerateStreamClientGone checks that a client leaving a stream
// cancels the model's execution and leaves nothing running.
func TestGenerateStreamClientGone(t *testing.T) {
	fake := newStreamFake()
	stopped := make(chan error, 1)
	fake.streamFn = func(ctx context.Context, req *infer.Request, send func(*infer.Response, bool) error) error {
		if err := send(&infer.Response{Model: req.Model, Version: "1", Outputs: []tensor.Tensor{i32("OUT", 1)}}, false); err != nil {
			return err
		}
		<-ctx.Done()
		stopped <- ctx.Err()
		return ctx.Err()
	}
	srv := newTestServer(t, fake.fakeService, quiet)
	srv.Config.Handler = NewHandler(fake, quiet)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v2/models/repeat/generate_stream", strings.NewReader(`{"IN": [1], "DELAY": [0], "WAIT": 0}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	cancel()
	resp.Body.Close()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("execution ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the execution was not cancelled")
	}
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left", runtime.NumGoroutine()-before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func FuzzGenerateRequest(f *testing.F) {
	for _, s := range []string{
		`{"IN": [1, 2], "DELAY": [0, 0], "WAIT": 0}`,
		`{"IN": [[1], [2]], "DELAY": [0, 0], "WAIT": [5], "parameters": {"a": "b"}}`,
		`{"text_input": "x", "max_tokens": 5}`,
		`{"IN": {"x": 1}}`, `[]`, `null`, `{"IN": [1e400]}`,
	} {
		f.Add([]byte(s))
	}
	cfgs := []*pb.ModelConfig{repeatConfig, newStreamFake().models["text"].config}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, cfg := range cfgs {
			req, err := decodeGenerateRequest("m", "", cfg, body, 1<<20)
			if err != nil {
				var ie *infer.Error
				if !errors.As(err, &ie) || ie.Code != infer.CodeInvalidArgument {
					t.Fatalf("error %v is not INVALID_ARGUMENT", err)
				}
				continue
			}
			for _, in := range req.Inputs {
				if err := in.Validate(); err != nil {
					t.Fatalf("input %s does not match its shape: %v", in.Name, err)
				}
			}
		}
	})
}
