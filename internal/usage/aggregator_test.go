package usage

import (
	"strings"
	"sync"
	"testing"
	"time"

	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

var t0 = time.Date(2026, 12, 7, 11, 20, 0, 0, time.UTC)

func TestAggregatorSums(t *testing.T) {
	a := NewAggregator(10)
	a.AddRequest(t0, "acme", "simple", 2, false, 3*time.Millisecond, 4*time.Millisecond)
	a.AddRequest(t0.Add(time.Minute), "acme", "simple", 1, true, time.Millisecond, 40*time.Millisecond)
	a.AddRequest(t0.Add(time.Hour), "acme", "simple", 5, false, 0, 0) // next hour, not timed
	a.AddThrottled(t0, "acme", "simple")
	a.AddThrottled(t0, "beta", "mlp") // throttled only
	a.AddRequest(t0, "acme", "mlp", -1, false, -time.Second, -time.Second)

	rows := a.Drain()
	h := HourOf(t0)
	want := []*usagev1.UsageRow{
		{HourUnix: h, ClientId: "acme", Model: "mlp", Requests: 1},
		{HourUnix: h, ClientId: "acme", Model: "simple", Requests: 2, Inferences: 3, Errors: 1, Throttled: 1,
			ComputeNs: uint64(4 * time.Millisecond), LatencyBuckets: buckets(2, 1, 5, 1)},
		{HourUnix: h, ClientId: "beta", Model: "mlp", Throttled: 1},
		{HourUnix: h + 3600, ClientId: "acme", Model: "simple", Requests: 1, Inferences: 5},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows %v, want %d", len(rows), rows, len(want))
	}
	for i := range want {
		if !rowEqual(rows[i], want[i]) {
			t.Errorf("row %d = %v\nwant %v", i, rows[i], want[i])
		}
	}
	if a.Keys() != 0 {
		t.Errorf("Keys() = %d after Drain", a.Keys())
	}
	if rows := a.Drain(); len(rows) != 0 {
		t.Errorf("second Drain = %v, want nothing", rows)
	}
}

func rowEqual(x, y *usagev1.UsageRow) bool {
	if x.HourUnix != y.HourUnix || x.ClientId != y.ClientId || x.Model != y.Model || x.Requests != y.Requests ||
		x.Inferences != y.Inferences || x.Errors != y.Errors || x.Throttled != y.Throttled || x.ComputeNs != y.ComputeNs ||
		len(x.LatencyBuckets) != len(y.LatencyBuckets) {
		return false
	}
	for i := range x.LatencyBuckets {
		if x.LatencyBuckets[i] != y.LatencyBuckets[i] {
			return false
		}
	}
	return true
}

func TestAggregatorBoundsKeys(t *testing.T) {
	a := NewAggregator(2)
	a.AddRequest(t0, "a", "m", 1, false, 0, 0)
	a.AddRequest(t0, "b", "m", 1, false, 0, 0)
	a.AddRequest(t0, "c", "m", 1, false, 0, 0) // a third key: dropped
	a.AddThrottled(t0, "d", "m")               // dropped
	a.AddRequest(t0, "a", "m", 1, false, 0, 0) // an existing key still counts
	if got := a.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d, want 2", got)
	}
	rows := a.Drain()
	if len(rows) != 2 || rows[0].ClientId != "a" || rows[0].Requests != 2 || rows[1].ClientId != "b" {
		t.Fatalf("rows = %v", rows)
	}
	// Drained: room again.
	a.AddRequest(t0, "c", "m", 1, false, 0, 0)
	if rows := a.Drain(); len(rows) != 1 || rows[0].ClientId != "c" {
		t.Errorf("after a drain rows = %v, want c's", rows)
	}
	if NewAggregator(0).maxKeys != DefaultMaxKeys {
		t.Error("NewAggregator(0) is not bounded by DefaultMaxKeys")
	}
}

// TestAggregatorDropsNamesTheLedgerRefuses: one bad row would make
// helix-authz refuse a whole batch, so such adds never make a row.
func TestAggregatorDropsNamesTheLedgerRefuses(t *testing.T) {
	a := NewAggregator(10)
	bad := []struct{ client, model string }{
		{"", "simple"},
		{strings.Repeat("c", MaxClientIDBytes+1), "simple"},
		{"ac\x00me", "simple"},
		{"acme\n", "simple"},
		{"\xff", "simple"},
		{"acme", ""},
		{"acme", "../etc"},
		{"acme", "a/b"},
		{"acme", "*"},
		{"acme", strings.Repeat("m", MaxModelBytes+1)},
	}
	for _, b := range bad {
		a.AddRequest(t0, b.client, b.model, 1, false, 0, time.Millisecond)
		a.AddThrottled(t0, b.client, b.model)
	}
	if rows := a.Drain(); len(rows) != 0 {
		t.Errorf("rows = %v, want none", rows)
	}
	if got := a.Dropped(); got != uint64(2*len(bad)) {
		t.Errorf("Dropped() = %d, want %d", got, 2*len(bad))
	}
	a.AddRequest(t0, strings.Repeat("c", MaxClientIDBytes), "résumé-1.2", 1, false, 0, 0)
	if rows := a.Drain(); len(rows) != 1 {
		t.Errorf("a valid long client id and model were not counted: %v", rows)
	}
}

func TestAddRequestDoesNotAllocate(t *testing.T) {
	a := NewAggregator(10)
	a.AddRequest(t0, "acme", "simple", 1, false, time.Millisecond, time.Millisecond)
	n := testing.AllocsPerRun(1000, func() {
		a.AddRequest(t0, "acme", "simple", 1, false, time.Millisecond, time.Millisecond)
		a.AddThrottled(t0, "acme", "simple")
	})
	if n != 0 {
		t.Errorf("adding to an existing key allocates %v times", n)
	}
}

// TestAggregatorConcurrent adds from many goroutines while another drains;
// nothing is lost or counted twice (run with -race).
func TestAggregatorConcurrent(t *testing.T) {
	const workers, perWorker = 8, 2000
	a := NewAggregator(100)
	clients := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				c := clients[(w+i)%len(clients)]
				if i%10 == 0 {
					a.AddThrottled(t0, c, "m")
				} else {
					a.AddRequest(t0, c, "m", 2, i%7 == 0, time.Microsecond, time.Millisecond)
				}
			}
		})
	}
	var total usagev1.UsageRow
	add := func(rows []*usagev1.UsageRow) {
		for _, r := range rows {
			total.Requests += r.Requests
			total.Inferences += r.Inferences
			total.Throttled += r.Throttled
			for _, c := range r.LatencyBuckets {
				total.ComputeNs += c // timed requests
			}
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for loop := true; loop; {
		select {
		case <-done:
			loop = false
		default:
			add(a.Drain())
		}
	}
	add(a.Drain())
	wantReq := uint64(workers * perWorker * 9 / 10)
	if total.Requests != wantReq || total.Inferences != 2*wantReq || total.ComputeNs != wantReq ||
		total.Throttled != workers*perWorker/10 {
		t.Errorf("totals: %d requests, %d rows, %d timed, %d throttled; want %d, %d, %d, %d",
			total.Requests, total.Inferences, total.ComputeNs, total.Throttled, wantReq, 2*wantReq, wantReq, workers*perWorker/10)
	}
	if a.Dropped() != 0 || a.Keys() != 0 {
		t.Errorf("dropped %d, keys %d", a.Dropped(), a.Keys())
	}
}

func BenchmarkAddRequest(b *testing.B) {
	a := NewAggregator(0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := time.Now()
		for pb.Next() {
			a.AddRequest(now, "acme", "simple", 1, false, time.Millisecond, time.Millisecond)
		}
	})
}
