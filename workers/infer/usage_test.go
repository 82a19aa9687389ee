package infer

import (
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/usage"
)

// TestRecordUsage: what one request adds to the aggregator, keyed by the
// gateway's client and (when it authorized exactly one) model.
func TestRecordUsage(t *testing.T) {
	ok := &Request{Usage: Usage{Rows: 4, Compute: 3 * time.Millisecond}}
	tests := []struct {
		name       string
		client     string
		authorized []string
		model      string
		req        *Request
		failed     bool
		// want is the one row counted ("" model: none counted).
		wantModel            string
		wantRows, wantErrors uint64
		wantCompute          time.Duration
	}{
		{name: "served", client: "acme", model: "simple", req: ok,
			wantModel: "simple", wantRows: 4, wantCompute: 3 * time.Millisecond},
		{name: "the gateway's model is the key", client: "acme", authorized: []string{"gw-model"}, model: "simple", req: ok,
			wantModel: "gw-model", wantRows: 4, wantCompute: 3 * time.Millisecond},
		{name: "several authorized models: the request's", client: "acme", authorized: []string{"a", "b"}, model: "simple", req: ok,
			wantModel: "simple", wantRows: 4, wantCompute: 3 * time.Millisecond},
		{name: "failed: an error, no rows, its compute kept", client: "acme", model: "simple", req: ok, failed: true,
			wantModel: "simple", wantErrors: 1, wantCompute: 3 * time.Millisecond},
		{name: "undecodable: an error and nothing else", client: "acme", model: "simple", failed: true,
			wantModel: "simple", wantErrors: 1},
		{name: "no client: not counted", model: "simple", req: ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agg := usage.NewAggregator(0)
			RecordUsage(agg, tt.client, tt.authorized, tt.model, tt.req, tt.failed, time.Now().Add(-5*time.Millisecond))
			rows := agg.Drain()
			if tt.wantModel == "" {
				if len(rows) != 0 || agg.Dropped() != 0 {
					t.Fatalf("counted %v (dropped %d), want nothing", rows, agg.Dropped())
				}
				return
			}
			if len(rows) != 1 {
				t.Fatalf("rows %v, want one", rows)
			}
			r := rows[0]
			if r.ClientId != tt.client || r.Model != tt.wantModel || r.Requests != 1 || r.Inferences != tt.wantRows ||
				r.Errors != tt.wantErrors || time.Duration(r.ComputeNs) != tt.wantCompute {
				t.Fatalf("row %+v, want client %q model %q 1 request, %d rows, %d errors, compute %v",
					r, tt.client, tt.wantModel, tt.wantRows, tt.wantErrors, tt.wantCompute)
			}
			var timed uint64
			for _, n := range r.LatencyBuckets {
				timed += n
			}
			if timed != 1 {
				t.Fatalf("latency buckets %v, want the one request timed", r.LatencyBuckets)
			}
		})
	}
	// A failed request leaves the caller's Request as it was.
	if ok.Usage.Rows != 4 {
		t.Fatalf("RecordUsage changed the request's usage: %+v", ok.Usage)
	}
	// A nil aggregator (usage off) counts nothing and does not panic.
	RecordUsage(nil, "acme", nil, "simple", ok, false, time.Now())
}
