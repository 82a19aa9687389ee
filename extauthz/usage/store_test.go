package usage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/usage"
	"github.com/helixflow/helixflow/internal/pgtest"
	counts "github.com/helixflow/helixflow/internal/usage"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

const orgA = "0b9f3c6e-7d0a-4c1e-9a51-1f0e5d1a2b3c"

// orgs maps clients to organizations as helix-authz's clients copy would.
func orgs(clientID string) string {
	if clientID == "client-a" || clientID == "client-a2" {
		return orgA
	}
	return ""
}

func newStore(t testing.TB) (*usage.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.Pool(t, pgtest.Migrated(t))
	return usage.NewStore(pool), pool
}

var hour0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func buckets(at map[int]uint64) []uint64 {
	b := make([]uint64, counts.NumBuckets)
	for i, n := range at {
		b[i] = n
	}
	return b
}

func row(h time.Time, client, model string, requests uint64) *usagev1.UsageRow {
	return &usagev1.UsageRow{HourUnix: h.Unix(), ClientId: client, Model: model, Requests: requests, Inferences: 2 * requests,
		ComputeNs: requests * uint64(time.Millisecond), LatencyBuckets: buckets(map[int]uint64{3: requests})}
}

// hourly reads one usage_hourly row.
type hourly struct {
	org                                    *string
	requests, inferences, errors, throttle int64
	computeNS                              int64
	buckets                                []int64
}

func readRow(t testing.TB, pool *pgxpool.Pool, h time.Time, client, model string) (hourly, bool) {
	t.Helper()
	var r hourly
	err := pool.QueryRow(ctx(t), `SELECT org_id::text, requests, inferences, errors, throttled, compute_ns, latency_buckets
		FROM usage_hourly WHERE hour = $1 AND client_id = $2 AND model = $3`, h, client, model).
		Scan(&r.org, &r.requests, &r.inferences, &r.errors, &r.throttle, &r.computeNS, &r.buckets)
	if err != nil {
		return r, false
	}
	return r, true
}

// TestApplyOnce: a batch sent again (a lost answer) is acknowledged as a
// duplicate and not counted twice; the next batch adds; rows of one key in
// a batch are summed; latency buckets add element by element.
func TestApplyOnce(t *testing.T) {
	st, pool := newStore(t)
	b1 := &usagev1.RecordRequest{Reporter: "worker/w1/boot1", Seq: 1, Rows: []*usagev1.UsageRow{
		row(hour0, "client-a", "resnet", 3), row(hour0, "client-a", "resnet", 2), row(hour0, "client-b", "bert", 1),
	}}
	for i, wantDup := range []bool{false, true, true} {
		dup, err := st.Apply(ctx(t), b1, orgs)
		if err != nil || dup != wantDup {
			t.Fatalf("send %d: dup %v, err %v; want dup %v", i+1, dup, err, wantDup)
		}
	}
	r, ok := readRow(t, pool, hour0, "client-a", "resnet")
	if !ok || r.requests != 5 || r.inferences != 10 || r.computeNS != int64(5*time.Millisecond) || r.buckets[3] != 5 || len(r.buckets) != counts.NumBuckets {
		t.Fatalf("client-a/resnet after one batch sent three times: %+v (found %v)", r, ok)
	}
	if r.org == nil || *r.org != orgA {
		t.Fatalf("org %v, want %s", r.org, orgA)
	}
	if r, _ := readRow(t, pool, hour0, "client-b", "bert"); r.org != nil || r.requests != 1 {
		t.Fatalf("an operator's client: %+v, want no organization and 1 request", r)
	}
	// The next batch adds; one without latencies leaves the buckets.
	b2 := &usagev1.RecordRequest{Reporter: "worker/w1/boot1", Seq: 2, Rows: []*usagev1.UsageRow{
		row(hour0, "client-a", "resnet", 1),
		{HourUnix: hour0.Unix(), ClientId: "client-a", Model: "resnet", Throttled: 4, Errors: 1},
	}}
	if dup, err := st.Apply(ctx(t), b2, orgs); err != nil || dup {
		t.Fatalf("batch 2: %v %v", dup, err)
	}
	r, _ = readRow(t, pool, hour0, "client-a", "resnet")
	if r.requests != 6 || r.throttle != 4 || r.errors != 1 || r.buckets[3] != 6 {
		t.Fatalf("after batch 2: %+v", r)
	}
	// Another reporter's batch 1 is its own.
	if dup, err := st.Apply(ctx(t), &usagev1.RecordRequest{Reporter: "worker/w2/boot1", Seq: 1,
		Rows: []*usagev1.UsageRow{row(hour0, "client-a", "resnet", 1)}}, orgs); err != nil || dup {
		t.Fatalf("other reporter: %v %v", dup, err)
	}
	if r, _ := readRow(t, pool, hour0, "client-a", "resnet"); r.requests != 7 {
		t.Fatalf("after the other reporter: %d requests, want 7", r.requests)
	}
}

// TestApplyConcurrent: the same batch sent by many goroutines at once is
// counted once, and distinct batches touching the same rows in different
// orders all count (no lost update, no deadlock surfacing as an error).
func TestApplyConcurrent(t *testing.T) {
	st, pool := newStore(t)
	same := &usagev1.RecordRequest{Reporter: "worker/w1/b", Seq: 7, Rows: []*usagev1.UsageRow{row(hour0, "client-a", "resnet", 1)}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied := 0
	for range 8 {
		wg.Go(func() {
			dup, err := st.Apply(ctx(t), same, orgs)
			if err != nil {
				t.Errorf("apply: %v", err)
				return
			}
			if !dup {
				mu.Lock()
				applied++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if applied != 1 {
		t.Fatalf("the same batch was applied %d times, want once", applied)
	}
	for i := range 8 {
		rows := []*usagev1.UsageRow{row(hour0, "client-a", "m1", 1), row(hour0, "client-a", "m2", 1), row(hour0.Add(time.Hour), "client-a", "m1", 1)}
		if i%2 == 1 {
			rows[0], rows[2] = rows[2], rows[0]
		}
		wg.Go(func() {
			req := &usagev1.RecordRequest{Reporter: fmt.Sprintf("worker/w%d/b", i), Seq: 1, Rows: rows}
			if _, err := st.Apply(ctx(t), req, orgs); err != nil {
				t.Errorf("apply %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for _, k := range []struct {
		h time.Time
		m string
	}{{hour0, "resnet"}, {hour0, "m1"}, {hour0, "m2"}, {hour0.Add(time.Hour), "m1"}} {
		want := int64(8)
		if k.m == "resnet" {
			want = 1
		}
		if r, _ := readRow(t, pool, k.h, "client-a", k.m); r.requests != want {
			t.Errorf("%s %s: %d requests, want %d", k.h, k.m, r.requests, want)
		}
	}
}

// TestApplyRefusesInvalid: an invalid batch changes nothing, is not
// remembered (a corrected one with its number applies), and its error says
// resending cannot help.
func TestApplyRefusesInvalid(t *testing.T) {
	st, pool := newStore(t)
	bad := &usagev1.RecordRequest{Reporter: "worker/w1/b", Seq: 1, Rows: []*usagev1.UsageRow{
		row(hour0, "client-a", "resnet", 1), {HourUnix: hour0.Unix() + 60, ClientId: "client-a", Model: "resnet", Requests: 1},
	}}
	_, err := st.Apply(ctx(t), bad, orgs)
	var rej interface{ Rejected() bool }
	if !errors.Is(err, usage.ErrInvalid) || !errors.As(err, &rej) || !rej.Rejected() {
		t.Fatalf("err %v: want ErrInvalid that says Rejected", err)
	}
	if _, ok := readRow(t, pool, hour0, "client-a", "resnet"); ok {
		t.Fatal("an invalid batch wrote a row")
	}
	good := &usagev1.RecordRequest{Reporter: "worker/w1/b", Seq: 1, Rows: bad.Rows[:1]}
	if dup, err := st.Apply(ctx(t), good, orgs); err != nil || dup {
		t.Fatalf("corrected batch: %v %v", dup, err)
	}
}

func TestValidate(t *testing.T) {
	ok := func() *usagev1.RecordRequest {
		return &usagev1.RecordRequest{Reporter: "worker/w1/b", Seq: 1, Rows: []*usagev1.UsageRow{row(hour0, "client-a", "resnet", 1)}}
	}
	tests := []struct {
		name   string
		change func(*usagev1.RecordRequest)
		want   string // in the error; "" valid
	}{
		{"valid", func(*usagev1.RecordRequest) {}, ""},
		{"no rows", func(r *usagev1.RecordRequest) { r.Rows = nil }, ""},
		{"no latencies", func(r *usagev1.RecordRequest) { r.Rows[0].LatencyBuckets = nil }, ""},
		{"no reporter", func(r *usagev1.RecordRequest) { r.Reporter = "" }, "reporter is empty"},
		{"long reporter", func(r *usagev1.RecordRequest) { r.Reporter = fmt.Sprintf("%0301d", 0) }, "reporter is 301 bytes"},
		{"control in reporter", func(r *usagev1.RecordRequest) { r.Reporter = "a\nb" }, "control characters"},
		{"seq 0", func(r *usagev1.RecordRequest) { r.Seq = 0 }, "seq 0"},
		{"seq over bigint", func(r *usagev1.RecordRequest) { r.Seq = 1 << 63 }, "seq"},
		{"hour not whole", func(r *usagev1.RecordRequest) { r.Rows[0].HourUnix += 1800 }, "rows[0].hour_unix"},
		{"hour negative", func(r *usagev1.RecordRequest) { r.Rows[0].HourUnix = -3600 }, "rows[0].hour_unix"},
		{"no client", func(r *usagev1.RecordRequest) { r.Rows[0].ClientId = "" }, "rows[0].client_id"},
		{"long client", func(r *usagev1.RecordRequest) { r.Rows[0].ClientId = fmt.Sprintf("%0201d", 0) }, "rows[0].client_id"},
		{"bad UTF-8 client", func(r *usagev1.RecordRequest) { r.Rows[0].ClientId = "\xff" }, "rows[0].client_id"},
		{"no model", func(r *usagev1.RecordRequest) { r.Rows[0].Model = "" }, "rows[0].model"},
		{"model path", func(r *usagev1.RecordRequest) { r.Rows[0].Model = "../x" }, "rows[0].model"},
		{"model over the column", func(r *usagev1.RecordRequest) { r.Rows[0].Model = fmt.Sprintf("m%0200d", 0) }, "rows[0].model is 201 bytes"},
		{"count over bigint", func(r *usagev1.RecordRequest) { r.Rows[0].Requests = 1 << 63 }, "rows[0].requests"},
		{"few buckets", func(r *usagev1.RecordRequest) { r.Rows[0].LatencyBuckets = []uint64{1} }, "latency_buckets has 1"},
		{"bucket over bigint", func(r *usagev1.RecordRequest) { r.Rows[0].LatencyBuckets[2] = 1 << 63 }, "latency_buckets[2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok()
			tt.change(r)
			err := usage.Validate(r)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("valid batch refused: %v", err)
			case tt.want != "" && (err == nil || !errors.Is(err, usage.ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err %v, want ErrInvalid naming %q", err, tt.want)
			}
		})
	}
}

// TestPrune: batch marks older than BatchRetention and API-key day counts
// older than KeyUseRetention go; younger ones stay.
func TestPrune(t *testing.T) {
	st, pool := newStore(t)
	now := time.Now()
	for _, age := range []time.Duration{usage.BatchRetention + time.Hour, usage.BatchRetention - time.Hour} {
		if _, err := pool.Exec(ctx(t), `INSERT INTO usage_batches (reporter, seq, applied_at) VALUES ($1, 1, $2)`,
			fmt.Sprintf("r-%s", age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx(t), `INSERT INTO clients (id, secret_hash) VALUES ('c1', '\x01');
		INSERT INTO api_keys (id, prefix, hash, client_id) VALUES ('k1', 'hx_k1', '\x01', 'c1')`); err != nil {
		t.Fatal(err)
	}
	for _, age := range []time.Duration{usage.KeyUseRetention + 48*time.Hour, usage.KeyUseRetention - 48*time.Hour} {
		if _, err := pool.Exec(ctx(t), `INSERT INTO api_key_usage_daily (key_id, day, count) VALUES ('k1', $1::date, 1)`,
			now.Add(-age).UTC().Format(time.DateOnly)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := st.Prune(ctx(t), now)
	if err != nil || n != 2 {
		t.Fatalf("prune: %d rows, %v; want 2 (a mark, a day count)", n, err)
	}
	for table, want := range map[string]int{"usage_batches": 1, "api_key_usage_daily": 1} {
		var left int
		if err := pool.QueryRow(ctx(t), `SELECT count(*) FROM `+table).Scan(&left); err != nil || left != want {
			t.Fatalf("%s: %d rows left (%v), want %d", table, left, err, want)
		}
	}
}

// TestThrottles: Check's hook counts into the aggregator, under the hour
// of its clock; a request without a model, or with one the ledger cannot
// hold, is not counted (it would make helix-authz refuse its own batch).
func TestThrottles(t *testing.T) {
	agg := counts.NewAggregator(100)
	th := usage.Throttles{Aggregator: agg, Now: func() time.Time { return hour0.Add(90 * time.Minute) }}
	th.Throttled("c1", "simple")
	th.Throttled("c1", "simple")
	th.Throttled("c1", "")
	th.Throttled("c1", fmt.Sprintf("m%0200d", 0))
	rows := agg.Drain()
	if len(rows) != 1 || rows[0].GetThrottled() != 2 || rows[0].GetHourUnix() != hour0.Add(time.Hour).Unix() || rows[0].GetModel() != "simple" {
		t.Fatalf("rows %v", rows)
	}
	if err := usage.Validate(&usagev1.RecordRequest{Reporter: "authz/h/b", Seq: 1, Rows: rows}); err != nil {
		t.Fatalf("the hook's rows are refused by the ledger: %v", err)
	}
}
