package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
)

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request straight to the handler.
func do(t *testing.T, h http.Handler, method, path string, body []byte, header map[string]string) response {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// errorMessage returns the "error" of a JSON error body, failing the test
// when the body is not one.
func errorMessage(t *testing.T, r response) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var e struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil {
		t.Fatalf("body %q is not a JSON error: %v", r.body, err)
	}
	return *e.Error
}

func TestHealth(t *testing.T) {
	tests := []struct {
		name        string
		live, ready bool
		path        string
		want        int
	}{
		{"live", true, true, "/v2/health/live", 200},
		{"not live", false, true, "/v2/health/live", 400},
		{"ready", true, true, "/v2/health/ready", 200},
		{"not ready", true, false, "/v2/health/ready", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeService()
			fake.live, fake.ready = tt.live, tt.ready
			r := do(t, NewHandler(fake, quiet), "GET", tt.path, nil, nil)
			if r.status != tt.want || len(r.body) != 0 {
				t.Errorf("status %d body %q, want %d and no body", r.status, r.body, tt.want)
			}
		})
	}
}

func TestServerMetadata(t *testing.T) {
	r := do(t, NewHandler(newFakeService(), quiet), "GET", "/v2", nil, nil)
	want := `{"name":"helix-worker","version":"0.1.0","extensions":["classification","binary_tensor_data"]}`
	if r.status != 200 || string(r.body) != want {
		t.Errorf("got %d %s, want %s", r.status, r.body, want)
	}
}

func TestModelMetadata(t *testing.T) {
	h := NewHandler(newFakeService(), quiet)
	tests := []struct {
		path       string
		wantStatus int
		wantBody   string
	}{
		{"/v2/models/simple", 200, `{"name":"simple","versions":["1"],"platform":"onnxruntime_onnx",` +
			`"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[-1,16]}],` +
			`"outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[-1,16]}]}`},
		{"/v2/models/simple/versions/007", 200, `{"name":"simple","versions":["7"],"platform":"onnxruntime_onnx",` +
			`"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[-1,16]}],` +
			`"outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[-1,16]}]}`},
		{"/v2/models/unbatched", 200, `{"name":"unbatched","versions":["1"],"platform":"","inputs":[],"outputs":[]}`},
		{"/v2/models/nope", 404, `{"error":"Request for unknown model: 'nope' is not found"}`},
		{"/v2/models/simple/versions/99999999999999999999", 400, ""},
		{"/v2/models/simple/versions/x", 404, `{"error":"Not Found"}`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := do(t, h, "GET", tt.path, nil, nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tt.wantStatus)
			}
			if tt.wantBody != "" && string(r.body) != tt.wantBody {
				t.Errorf("body\n%s\nwant\n%s", r.body, tt.wantBody)
			}
		})
	}
}

func TestModelReady(t *testing.T) {
	h := NewHandler(newFakeService(), quiet)
	for path, want := range map[string]int{
		"/v2/models/simple/ready":            200,
		"/v2/models/simple/versions/1/ready": 200,
		"/v2/models/loading/ready":           400,
		"/v2/models/nope/ready":              404,
	} {
		r := do(t, h, "GET", path, nil, nil)
		if r.status != want {
			t.Errorf("%s: status %d (%s), want %d", path, r.status, r.body, want)
		}
		if want == 400 && errorMessage(t, r) != "Model version not ready" {
			t.Errorf("%s: body %s", path, r.body)
		}
	}
}

func TestModelConfig(t *testing.T) {
	fake := newFakeService()
	fake.models["empty"] = &fakeModel{config: &pb.ModelConfig{}}
	h := NewHandler(fake, quiet)

	r := do(t, h, "GET", "/v2/models/simple/config", nil, nil)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var cfg map[string]any
	if err := json.Unmarshal(r.body, &cfg); err != nil {
		t.Fatalf("config is not JSON: %v\n%s", err, r.body)
	}
	if cfg["name"] != "simple" || cfg["max_batch_size"] != 8.0 || cfg["platform"] != "" {
		t.Errorf("config %s", r.body)
	}
	in := cfg["input"].([]any)[0].(map[string]any)
	if in["data_type"] != "TYPE_FP32" || in["format"] != "FORMAT_NONE" {
		t.Errorf("input %v", in)
	}
	if dims, ok := in["dims"].([]any); !ok || dims[0] != -1.0 {
		t.Errorf("dims must be JSON numbers, got %v", in["dims"])
	}

	r = do(t, h, "GET", "/v2/models/empty/config", nil, nil)
	if r.status != 200 || len(r.body) != 0 {
		t.Errorf("empty config: %d %q, want 200 and an empty body", r.status, r.body)
	}
	r = do(t, h, "GET", "/v2/models/nope/config", nil, nil)
	if r.status != 404 {
		t.Errorf("unknown model: %d", r.status)
	}
}

func TestModelStats(t *testing.T) {
	fake := newFakeService()
	fake.stats = []*pb.ModelStatistics{{
		Name: "simple", Version: "1", LastInference: 1700000000000, InferenceCount: 10, ExecutionCount: 4,
		InferenceStats: &pb.InferStatistics{Success: &pb.StatisticDuration{Count: 10, Ns: 5000}},
		BatchStats: []*pb.InferBatchStatistics{{
			BatchSize: 2, ComputeInfer: &pb.StatisticDuration{Count: 3, Ns: 300},
		}},
		MemoryUsage: []*pb.MemoryUsage{{Type: "GPU", Id: 0, ByteSize: 1024}},
	}}
	h := NewHandler(fake, quiet)
	zero := `{"count":0,"ns":0}`
	want := `{"model_stats":[{"name":"simple","version":"1","last_inference":1700000000000,"inference_count":10,` +
		`"execution_count":4,"inference_stats":{"success":{"count":10,"ns":5000},"fail":` + zero +
		`,"queue":` + zero + `,"compute_input":` + zero + `,"compute_infer":` + zero + `,"compute_output":` + zero +
		`,"cache_hit":` + zero + `,"cache_miss":` + zero + `},"response_stats":{},` +
		`"batch_stats":[{"batch_size":2,"compute_input":` + zero + `,"compute_infer":{"count":3,"ns":300},"compute_output":` + zero + `}],` +
		`"memory_usage":[{"type":"GPU","id":0,"byte_size":1024}]}]}`
	for path, args := range map[string][2]string{
		"/v2/models/stats":                   {"", ""},
		"/v2/models/simple/stats":            {"simple", ""},
		"/v2/models/simple/versions/1/stats": {"simple", "1"},
	} {
		r := do(t, h, "GET", path, nil, nil)
		if r.status != 200 || string(r.body) != want {
			t.Errorf("%s: %d\n%s\nwant\n%s", path, r.status, r.body, want)
		}
		if fake.lastStats != args {
			t.Errorf("%s: service asked for %q, want %q", path, fake.lastStats, args)
		}
	}
	fake.stats = nil
	if r := do(t, h, "GET", "/v2/models/stats", nil, nil); string(r.body) != `{"model_stats":[]}` {
		t.Errorf("no stats: %s", r.body)
	}
	if r := do(t, h, "GET", "/v2/models/nope/stats", nil, nil); r.status != 404 {
		t.Errorf("unknown model stats: %d", r.status)
	}
}

func TestRepositoryIndex(t *testing.T) {
	fake := newFakeService()
	fake.index = []infer.IndexEntry{
		{Name: "simple", Version: "1", State: infer.StateReady},
		{Name: "broken", Version: "1", State: infer.StateUnavailable, Reason: "bad config"},
		{Name: "notloaded"},
	}
	h := NewHandler(fake, quiet)
	want := `[{"name":"simple","version":"1","state":"READY"},` +
		`{"name":"broken","version":"1","state":"UNAVAILABLE","reason":"bad config"},{"name":"notloaded"}]`
	tests := []struct {
		path, body string
		wantStatus int
		wantReady  bool
	}{
		{"/v2/repository/index", "", 200, false},
		{"/v2/repository/index", `{"ready": true}`, 200, true},
		{"/v2/repository/index", `{}`, 200, false},
		{"/v2/repository/myrepo/index", `{"ready": false}`, 200, false},
		{"/v2/repository/index", `{"ready": "yes"}`, 400, false},
		{"/v2/repository/index", `{"ready": tru`, 400, false},
	}
	for _, tt := range tests {
		fake.lastIndexReady = nil
		r := do(t, h, "POST", tt.path, []byte(tt.body), nil)
		if r.status != tt.wantStatus {
			t.Errorf("%s %q: status %d (%s), want %d", tt.path, tt.body, r.status, r.body, tt.wantStatus)
			continue
		}
		if tt.wantStatus != 200 {
			errorMessage(t, r)
			continue
		}
		if string(r.body) != want {
			t.Errorf("body %s", r.body)
		}
		if fake.lastIndexReady == nil || *fake.lastIndexReady != tt.wantReady {
			t.Errorf("%q: ready flag not passed as %v", tt.body, tt.wantReady)
		}
	}
}

func TestRepositoryLoadUnload(t *testing.T) {
	fake := newFakeService()
	h := NewHandler(fake, quiet)

	r := do(t, h, "POST", "/v2/repository/models/simple/load",
		[]byte(`{"parameters":{"config":"{\"backend\":\"onnxruntime\"}","file:1/model.onnx":"aGVsbG8="}}`), nil)
	if r.status != 200 {
		t.Fatalf("load: %d %s", r.status, r.body)
	}
	if fake.lastLoaded != "simple" || fake.lastLoad.ConfigJSON != `{"backend":"onnxruntime"}` ||
		string(fake.lastLoad.Files["file:1/model.onnx"]) != "hello" {
		t.Errorf("load passed %q %+v", fake.lastLoaded, fake.lastLoad)
	}
	if r := do(t, h, "POST", "/v2/repository/models/other/load", nil, nil); r.status != 200 || fake.lastLoaded != "other" {
		t.Errorf("load without a body: %d %s", r.status, r.body)
	}

	r = do(t, h, "POST", "/v2/repository/models/simple/unload", []byte(`{"parameters":{"unload_dependents":true}}`), nil)
	if r.status != 200 || fake.lastUnload.model != "simple" || !fake.lastUnload.dependents {
		t.Errorf("unload: %d %s %+v", r.status, r.body, fake.lastUnload)
	}

	bad := []struct {
		path, body string
		want       int
	}{
		{"/v2/repository/models/m/load", `{"parameters":{"file:1/model.onnx":"***"}}`, 400},
		{"/v2/repository/models/m/load", `{"parameters":{"config":5}}`, 400},
		{"/v2/repository/models/m/load", `{"parameters":{"colour":"red"}}`, 400},
		{"/v2/repository/models/m/load", `{"parameters":[]}`, 400},
		{"/v2/repository/models/m/load", `not json`, 400},
		{"/v2/repository/models/m/unload", `{"parameters":{"unload_dependents":"yes"}}`, 400},
		{"/v2/repository/myrepo/models/m/load", ``, 501},
	}
	for _, tt := range bad {
		r := do(t, h, "POST", tt.path, []byte(tt.body), nil)
		if r.status != tt.want {
			t.Errorf("%s %s: %d (%s), want %d", tt.path, tt.body, r.status, r.body, tt.want)
		}
		errorMessage(t, r)
	}

	fake.err = infer.Errorf(infer.CodeInvalidArgument, "failed to load 'm': bad config")
	r = do(t, h, "POST", "/v2/repository/models/m/load", nil, nil)
	if r.status != 400 || errorMessage(t, r) != "failed to load 'm': bad config" {
		t.Errorf("service error: %d %s", r.status, r.body)
	}
}

func TestUnsupportedFeatures(t *testing.T) {
	h := NewHandler(newFakeService(), quiet)
	tests := []struct {
		method, path string
		want         int
		wantBody     string
	}{
		{"GET", "/v2/systemsharedmemory/status", 200, "[]"},
		{"GET", "/v2/cudasharedmemory/status", 200, "[]"},
		{"GET", "/v2/systemsharedmemory/region/r0/status", 404, ""},
		{"POST", "/v2/systemsharedmemory/region/r0/register", 501, ""},
		{"POST", "/v2/cudasharedmemory/region/r0/register", 501, ""},
		{"POST", "/v2/systemsharedmemory/unregister", 200, ""},
		{"POST", "/v2/cudasharedmemory/region/r0/unregister", 200, ""},
		{"POST", "/v2/systemsharedmemory/status", 405, ""},
		{"GET", "/v2/trace/setting", 503, ""},
		{"POST", "/v2/trace/setting", 503, ""},
		{"GET", "/v2/models/simple/trace/setting", 503, ""},
		{"GET", "/v2/logging", 503, ""},
		{"GET", "/v2/models/simple/generate", 405, ""},
	}
	for _, tt := range tests {
		r := do(t, h, tt.method, tt.path, nil, nil)
		if r.status != tt.want {
			t.Errorf("%s %s: %d (%s), want %d", tt.method, tt.path, r.status, r.body, tt.want)
			continue
		}
		if tt.want != 200 {
			if msg := errorMessage(t, r); tt.want == 501 && !strings.Contains(msg, "not supported") && !strings.Contains(msg, "CUDA shared memory needs the cuda backend") {
				t.Errorf("%s: message %q does not say it is unsupported", tt.path, msg)
			}
		} else if string(r.body) != tt.wantBody {
			t.Errorf("%s: body %q, want %q", tt.path, r.body, tt.wantBody)
		}
	}
}

func TestRoutingErrors(t *testing.T) {
	h := NewHandler(newFakeService(), quiet)
	tests := []struct {
		method, path string
		want         int
		allow        string
	}{
		{"GET", "/", 404, ""},
		{"GET", "/v1/models/simple", 404, ""},
		{"GET", "/v2/", 404, ""},
		{"GET", "/v2/models", 404, ""},
		{"GET", "/v2/models/", 404, ""},
		{"GET", "/v2/models/simple/", 404, ""},
		{"GET", "/v2/models/simple/versions", 404, ""},
		{"GET", "/v2/models/simple/versions/1/trace/setting", 404, ""},
		{"GET", "/v2/models/simple/bogus", 404, ""},
		{"GET", "/v2/health", 404, ""},
		{"GET", "/v2/health/alive", 404, ""},
		{"GET", "/v2/repository/models/m", 404, ""},
		{"GET", "/v2/systemsharedmemory/region/r0", 404, ""},
		{"POST", "/v2/health/live", 405, "GET"},
		{"POST", "/v2", 405, "GET"},
		{"DELETE", "/v2/models/simple", 405, "GET"},
		{"GET", "/v2/models/simple/infer", 405, "POST"},
		{"GET", "/v2/repository/index", 405, "POST"},
		{"GET", "/v2/repository/models/m/load", 405, "POST"},
		{"PUT", "/v2/logging", 405, "GET, POST"},
	}
	for _, tt := range tests {
		r := do(t, h, tt.method, tt.path, nil, nil)
		if r.status != tt.want {
			t.Errorf("%s %s: %d (%s), want %d", tt.method, tt.path, r.status, r.body, tt.want)
			continue
		}
		msg := errorMessage(t, r)
		if tt.want == 404 && msg != "Not Found" || tt.want == 405 && msg != "Method Not Allowed" {
			t.Errorf("%s %s: message %q", tt.method, tt.path, msg)
		}
		if got := r.header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

func TestEscapedModelName(t *testing.T) {
	fake := newFakeService()
	fake.models["a b/c"] = fake.models["simple"]
	r := do(t, NewHandler(fake, quiet), "GET", "/v2/models/a%20b%2Fc/ready", nil, nil)
	if r.status != 200 {
		t.Errorf("escaped name: %d %s", r.status, r.body)
	}
}

func TestErrorStatusMapping(t *testing.T) {
	tests := []struct {
		code infer.Code
		want int
	}{
		{infer.CodeInternal, 500},
		{infer.CodeInvalidArgument, 400},
		{infer.CodeNotFound, 404},
		{infer.CodeUnavailable, 503},
		{infer.CodeUnimplemented, 501},
		{infer.CodeResourceExhausted, 429},
		{infer.CodeDeadlineExceeded, 503},
		{infer.CodeCancelled, 400},
		{infer.CodeAlreadyExists, 400},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			fake := newFakeService()
			fake.err = infer.Errorf(tt.code, "model says <%s> & \"no\"", tt.code)
			h := NewHandler(fake, quiet)
			for _, req := range []struct{ method, path, body string }{
				{"GET", "/v2/models/simple", ""},
				{"GET", "/v2/models/simple/ready", ""},
				{"GET", "/v2/models/simple/config", ""},
				{"GET", "/v2/models/simple/stats", ""},
				{"POST", "/v2/models/simple/infer", `{"inputs":[]}`},
				{"POST", "/v2/repository/index", ""},
				{"POST", "/v2/repository/models/simple/load", ""},
				{"POST", "/v2/repository/models/simple/unload", ""},
			} {
				r := do(t, h, req.method, req.path, []byte(req.body), nil)
				if r.status != tt.want {
					t.Errorf("%s: status %d, want %d", req.path, r.status, tt.want)
				}
				if msg := errorMessage(t, r); msg != fake.err.Error() {
					t.Errorf("%s: message %q, want %q", req.path, msg, fake.err.Error())
				}
			}
		})
	}
}

// wsRecorder is a WebSocketHandler that records the calls it gets.
type wsRecorder struct{ calls []string }

func (w *wsRecorder) ServeInferWS(rw http.ResponseWriter, _ *http.Request, model, version string) {
	w.calls = append(w.calls, model+"/"+version)
	rw.WriteHeader(http.StatusSwitchingProtocols)
}

// TestWebSocketRouteMethods: only a GET reaches the WebSocket handler;
// every other method on an /infer/ws path is 405 with Allow: GET, as on
// every other route (schemathesis found TRACE answered 426 by the
// WebSocket library).
func TestWebSocketRouteMethods(t *testing.T) {
	tests := []struct {
		method, path string
		want         int
		call         string
	}{
		{"GET", "/v2/models/simple/infer/ws", http.StatusSwitchingProtocols, "simple/"},
		{"GET", "/v2/models/simple/versions/007/infer/ws", http.StatusSwitchingProtocols, "simple/7"},
		{"POST", "/v2/models/simple/infer/ws", http.StatusMethodNotAllowed, ""},
		{"TRACE", "/v2/models/simple/infer/ws", http.StatusMethodNotAllowed, ""},
		{"PUT", "/v2/models/simple/versions/1/infer/ws", http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			ws := &wsRecorder{}
			opts := quiet
			opts.WebSocket = ws
			r := do(t, NewHandler(newFakeService(), opts), tt.method, tt.path, nil, nil)
			if r.status != tt.want {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tt.want)
			}
			if tt.want == http.StatusMethodNotAllowed {
				if got := r.header.Get("Allow"); got != "GET" {
					t.Errorf("Allow %q, want GET", got)
				}
				if msg := errorMessage(t, r); msg != "Method Not Allowed" {
					t.Errorf("message %q", msg)
				}
			}
			want := []string(nil)
			if tt.call != "" {
				want = []string{tt.call}
			}
			if strings.Join(ws.calls, ",") != strings.Join(want, ",") {
				t.Errorf("WebSocket handler calls %v, want %v", ws.calls, want)
			}
		})
	}
}
