package httpapi

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/infer"
)

// TestUsageIsCounted: inference requests carrying x-helix-client are
// counted per client and model (the gateway's x-helix-model when given),
// failures as errors whether decoding or the service failed; requests
// without the header, and every request when usage is off, are not.
func TestUsageIsCounted(t *testing.T) {
	fake := newFakeService()
	fake.inferFn = func(req *infer.Request) (*infer.Response, error) {
		req.Usage = infer.Usage{Rows: 1, Compute: 2 * time.Millisecond}
		return &infer.Response{Model: req.Model, Version: "1", Outputs: req.Inputs}, nil
	}
	agg := usage.NewAggregator(100)
	opts := quiet
	opts.Usage = agg
	on, off := NewHandler(fake, opts), NewHandler(fake, quiet)
	const good = `{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,1],"data":[1]}]}`
	tests := []struct {
		h                   bool // usage on
		client, model, path string
		body                string
		status              int
	}{
		{true, "", "", "/v2/models/simple/infer", good, 200},            // no client: not counted
		{false, "acme", "simple", "/v2/models/simple/infer", good, 200}, // usage off
		{true, "acme", "simple", "/v2/models/simple/infer", good, 200},
		{true, "acme", "simple", "/v2/models/simple/versions/1/infer", good, 200},
		{true, "acme", "simple", "/v2/models/simple/infer", `{"inputs":[`, 400},
		{true, "acme", "", "/v2/models/nope/infer", good, 404},
		{true, "beta", "simple", "/v2/models/simple/infer", good, 200},
	}
	for i, tt := range tests {
		req := httptest.NewRequest("POST", tt.path, strings.NewReader(tt.body))
		if tt.client != "" {
			req.Header.Set(wire.HeaderClient, tt.client)
		}
		if tt.model != "" {
			req.Header.Set(wire.HeaderModel, tt.model)
		}
		rec := httptest.NewRecorder()
		h := off
		if tt.h {
			h = on
		}
		h.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Fatalf("request %d: status %d (%s), want %d", i, rec.Code, rec.Body, tt.status)
		}
	}
	rows := agg.Drain()
	type row struct {
		client, model                string
		requests, inferences, errors uint64
		compute                      time.Duration
	}
	want := []row{
		{"acme", "nope", 1, 0, 1, 0},
		{"acme", "simple", 3, 2, 1, 4 * time.Millisecond},
		{"beta", "simple", 1, 1, 0, 2 * time.Millisecond},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows = %v, want %v", rows, want)
	}
	for i, r := range rows {
		got := row{r.ClientId, r.Model, r.Requests, r.Inferences, r.Errors, time.Duration(r.ComputeNs)}
		if got != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, got, want[i])
		}
		var timed uint64
		for _, c := range r.LatencyBuckets {
			timed += c
		}
		if timed != r.Requests {
			t.Errorf("row %d: %d requests timed, want %d", i, timed, r.Requests)
		}
	}
}

// BenchmarkInferUsage is a small binary request with usage off and on
// (counted under x-helix-client): what counting adds to the front end.
func BenchmarkInferUsage(b *testing.B) {
	header := `{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"FP32","parameters":{"binary_data_size":64}}],` +
		`"outputs":[{"name":"INPUT0","parameters":{"binary_data":true}}]}`
	body := append([]byte(header), make([]byte, 64)...)
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			opts := quiet
			hdr := map[string]string{headerLengthHeader: strconv.Itoa(len(header)), wire.HeaderModel: "simple"}
			if on {
				opts.Usage = usage.NewAggregator(0)
				hdr[wire.HeaderClient] = "acme"
			}
			benchmarkInferOptions(b, body, hdr, opts)
		})
	}
}
