package httpapi

import (
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/infer"
)

// TestTrafficRouting: an inference route whose path names no version is
// served by the version a traffic policy chose (x-helix-model-version);
// a path's version wins; bad routing headers are 400 naming the header;
// the other model routes ignore the headers.
func TestTrafficRouting(t *testing.T) {
	const body = `{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,1],"data":[1]}]}`
	ws := &wsRecorder{}
	fake := newStreamFake()
	opts := quiet
	opts.WebSocket = ws
	h := NewHandler(fake, opts)
	for _, tc := range []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		version                  string // the version served (infer and generate: the request's; ws: the call's)
		errPart                  string
	}{
		{name: "infer, policy's version", method: "POST", path: "/v2/models/simple/infer", body: body,
			header: map[string]string{wire.HeaderModelVersion: "2"}, status: 200, version: "2"},
		{name: "infer, path's version wins", method: "POST", path: "/v2/models/simple/versions/1/infer", body: body,
			header: map[string]string{wire.HeaderModelVersion: "2"}, status: 200, version: "1"},
		{name: "infer, normalized as a path's", method: "POST", path: "/v2/models/simple/infer", body: body,
			header: map[string]string{wire.HeaderModelVersion: "007"}, status: 200, version: "7"},
		{name: "infer, no policy", method: "POST", path: "/v2/models/simple/infer", body: body, status: 200, version: ""},
		{name: "shadow copy served", method: "POST", path: "/v2/models/simple/infer", body: body,
			header: map[string]string{wire.HeaderModelVersion: "3", wire.HeaderShadow: "1"}, status: 200, version: "3"},
		{name: "generate, policy's version", method: "POST", path: "/v2/models/text/generate", body: `{"text_input": "hi"}`,
			header: map[string]string{wire.HeaderModelVersion: "4"}, status: 200, version: "4"},
		{name: "WebSocket, policy's version", method: "GET", path: "/v2/models/simple/infer/ws",
			header: map[string]string{wire.HeaderModelVersion: "5"}, status: 101, version: "5"},
		{name: "bad version header", method: "POST", path: "/v2/models/simple/infer", body: body,
			header: map[string]string{wire.HeaderModelVersion: "x"}, status: 400, errPart: "header x-helix-model-version: not a valid model version"},
		{name: "bad shadow header", method: "POST", path: "/v2/models/simple/generate", body: `{}`,
			header: map[string]string{wire.HeaderShadow: "yes"}, status: 400, errPart: `header x-helix-shadow is "yes"; the gateway sets 1`},
		{name: "bad header on a WebSocket", method: "GET", path: "/v2/models/simple/infer/ws",
			header: map[string]string{wire.HeaderModelVersion: "-1"}, status: 400, errPart: "x-helix-model-version"},
		{name: "metadata ignores the headers", method: "GET", path: "/v2/models/simple",
			header: map[string]string{wire.HeaderModelVersion: "x", wire.HeaderShadow: "yes"}, status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.mu.Lock()
			fake.lastInfer = nil
			fake.mu.Unlock()
			ws.calls = nil
			r := do(t, h, tc.method, tc.path, []byte(tc.body), tc.header)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			if tc.errPart != "" {
				if msg := errorMessage(t, r); !strings.Contains(msg, tc.errPart) {
					t.Fatalf("error %q, want %q", msg, tc.errPart)
				}
				if fake.inferred() != nil || len(ws.calls) > 0 {
					t.Fatal("a refused request was served")
				}
				return
			}
			switch {
			case tc.status == 101:
				if want := []string{"simple/" + tc.version}; len(ws.calls) != 1 || ws.calls[0] != want[0] {
					t.Fatalf("WebSocket calls %v, want %v", ws.calls, want)
				}
			case tc.method == "POST":
				if req := fake.inferred(); req == nil || req.Version != tc.version {
					t.Fatalf("served %+v, want version %q", req, tc.version)
				}
			}
		})
	}
}

// TestShadowUsage: a shadow copy is served but records no usage; the same
// request without x-helix-shadow is counted.
func TestShadowUsage(t *testing.T) {
	const body = `{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,1],"data":[1]}]}`
	for _, tc := range []struct {
		name   string
		shadow bool
		want   uint64 // requests counted
	}{
		{"shadow", true, 0},
		{"primary", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newStreamFake()
			fake.inferFn = func(req *infer.Request) (*infer.Response, error) {
				req.Usage = infer.Usage{Rows: 1}
				return &infer.Response{Model: req.Model, Version: "1", Outputs: req.Inputs}, nil
			}
			agg := usage.NewAggregator(100)
			opts := quiet
			opts.Usage = agg
			h := NewHandler(fake, opts)
			hdr := map[string]string{wire.HeaderClient: "acme", wire.HeaderModel: "simple"}
			if tc.shadow {
				hdr[wire.HeaderShadow] = "1"
			}
			for _, path := range []string{"/v2/models/simple/infer", "/v2/models/simple/generate"} {
				b := body
				if strings.HasSuffix(path, "generate") {
					b = `{"INPUT0": [[1]]}`
				}
				if r := do(t, h, "POST", path, []byte(b), hdr); r.status != 200 {
					t.Fatalf("%s: %d %s", path, r.status, r.body)
				}
			}
			var got uint64
			for _, row := range agg.Drain() {
				got += row.Requests
			}
			if got != tc.want {
				t.Fatalf("%d requests counted, want %d", got, tc.want)
			}
		})
	}
}
