package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/rueidis"

	"github.com/helixflow/helixflow/internal/redistest"
	"github.com/helixflow/helixflow/xds/ir"
)

// clock is a settable time for Take; Redis keeps real time for expiries.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

var testPlans = &ir.RateLimit{
	Domain: "test", Timeout: 200 * time.Millisecond, DefaultPlan: "free",
	Plans: []ir.Plan{
		{Name: "free", RequestsPerSecond: 3},
		{Name: "gold", RequestsPerSecond: 10, RequestsPerMinute: 12},
		{Name: "minute", RequestsPerMinute: 2},
		{Name: "unlimited"},
	},
}

type env struct {
	redis *redistest.Server
	conn  *Redis
	lim   *Limiter
	clock *clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := redistest.Start(t)
	conn := NewRedis(RedisOptions{Address: srv.Addr})
	t.Cleanup(conn.Close)
	// A second in the middle of a minute, so that no test crosses a window
	// by accident.
	c := &clock{t: time.Unix(1_800_000_000, 0).Truncate(time.Minute).Add(20*time.Second + 100*time.Millisecond)}
	lim, err := New(conn, testPlans, Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	e := &env{redis: srv, conn: conn, lim: lim, clock: c}
	waitConnected(t, e)
	return e
}

// waitConnected waits for the background connection.
func waitConnected(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := e.conn.IncrBy(context.Background(), []Increment{{Key: "probe", By: 1, TTL: 1}}); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("not connected to Redis: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func take(t *testing.T, e *env, plan, client, model string) Decision {
	t.Helper()
	d, err := e.lim.Take(context.Background(), plan, client, model)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPerSecondLimit(t *testing.T) {
	e := newEnv(t)
	for i := range 3 {
		d := take(t, e, "free", "hxc_a", "simple")
		if !d.Allowed || d.Limit != 3 || d.Remaining != uint32(2-i) {
			t.Fatalf("request %d: %+v, want allowed with %d left of 3", i+1, d, 2-i)
		}
	}
	d := take(t, e, "free", "hxc_a", "simple")
	if d.Allowed || d.Remaining != 0 || d.Limit != 3 || d.Reset <= 0 || d.Reset > time.Second {
		t.Fatalf("4th request in one second: %+v, want over the limit of 3 within a second", d)
	}
	// Counters are per client and per model; a request without a model
	// has a counter of its own.
	for _, other := range []struct{ client, model string }{{"hxc_b", "simple"}, {"hxc_a", "mlp"}, {"hxc_a", ""}} {
		if d := take(t, e, "free", other.client, other.model); !d.Allowed {
			t.Fatalf("%s on %q shares hxc_a's counter on simple: %+v", other.client, other.model, d)
		}
	}
	e.clock.set(e.clock.now().Add(time.Second))
	if d := take(t, e, "free", "hxc_a", "simple"); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("next second: %+v, want a fresh window", d)
	}
}

func TestBothWindows(t *testing.T) {
	e := newEnv(t)
	allowed := 0
	for s := range 3 {
		for range 6 {
			if take(t, e, "gold", "hxc_g", "m").Allowed {
				allowed++
			}
		}
		if s < 2 {
			e.clock.set(e.clock.now().Add(time.Second))
		}
	}
	if allowed != 12 {
		t.Fatalf("18 requests over 3 seconds on 10/s and 12/min: %d allowed, want 12", allowed)
	}
	d := take(t, e, "gold", "hxc_g", "m")
	if d.Allowed || d.Limit != 12 || d.Reset < 30*time.Second || len(d.Windows) != 2 {
		t.Fatalf("over the minute's limit: %+v, want the minute window (12, about 38s to reset) reported", d)
	}
}

func TestPlans(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, plan string
		allowed    int
	}{
		{"no plan: the default's", "", 3},
		{"an unlisted plan: the default's, never none", "removed-plan", 3},
		{"per minute only", "minute", 2},
		{"a plan without limits", "unlimited", 20},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := "hxc_" + string(rune('p'+i))
			n := 0
			for range 20 {
				if take(t, e, tt.plan, client, "m").Allowed {
					n++
				}
			}
			if n != tt.allowed {
				t.Fatalf("plan %q: %d of 20 allowed, want %d", tt.plan, n, tt.allowed)
			}
		})
	}
}

func TestSetPlans(t *testing.T) {
	e := newEnv(t)
	if err := e.lim.SetPlans(&ir.RateLimit{Domain: "test", Timeout: time.Second, DefaultPlan: "x", Plans: []ir.Plan{{Name: "y"}}}); err == nil {
		t.Fatal("a default plan that is not a plan was taken")
	}
	if err := e.lim.SetPlans(&ir.RateLimit{Domain: "test", Timeout: time.Second, DefaultPlan: "free", Plans: []ir.Plan{{Name: "free", RequestsPerSecond: 1}}}); err != nil {
		t.Fatal(err)
	}
	take(t, e, "free", "hxc_s", "m")
	if d := take(t, e, "free", "hxc_s", "m"); d.Allowed {
		t.Fatalf("after the plan went to 1/s, the 2nd request passed: %+v", d)
	}
}

func TestRedisDown(t *testing.T) {
	e := newEnv(t)
	for range 4 {
		take(t, e, "free", "hxc_over", "m")
	}
	e.redis.Stop()
	// A counter known to be over its limit needs no Redis until its window
	// ends; any other request cannot be decided.
	if d, err := e.lim.Take(context.Background(), "free", "hxc_over", "m"); err != nil || d.Allowed {
		t.Fatalf("over the limit with Redis down: %+v, %v; want denied from memory", d, err)
	}
	if d, err := e.lim.Take(context.Background(), "free", "hxc_other", "m"); !errors.Is(err, ErrUnavailable) || !d.Allowed {
		t.Fatalf("Redis down, failure mode open: %+v, %v; want allowed with ErrUnavailable", d, err)
	}
	closed := *testPlans
	closed.FailureModeDeny = true
	if err := e.lim.SetPlans(&closed); err != nil {
		t.Fatal(err)
	}
	if d, err := e.lim.Take(context.Background(), "free", "hxc_other", "m"); !errors.Is(err, ErrUnavailable) || d.Allowed {
		t.Fatalf("Redis down, failure mode closed: %+v, %v; want refused with ErrUnavailable", d, err)
	}
	if err := e.redis.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := e.lim.Take(context.Background(), "free", "hxc_back", "m")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis back for 10s, still: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartsWithoutRedis(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	conn := NewRedis(RedisOptions{Address: srv.Addr})
	defer conn.Close()
	lim, err := New(conn, testPlans, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	if _, err := lim.Take(context.Background(), "free", "hxc", "m"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("before Redis ever answered: %v, want ErrUnavailable", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	e := &env{conn: conn, lim: lim}
	waitConnected(t, e)
}

func TestTimeout(t *testing.T) {
	e := newEnv(t)
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{e.redis.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// Writes wait while clients are paused: the limiter must give up at
	// the config's timeout (200ms here), not wait the pause out.
	if err := admin.Do(context.Background(), admin.B().ClientPause().Timeout(2000).Write().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.lim.Take(context.Background(), "free", "hxc_t", "m")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("paused Redis: %v, want ErrUnavailable", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("gave up after %s, want about the 200ms timeout", waited)
	}
}

func TestCounterExpires(t *testing.T) {
	e := newEnv(t)
	take(t, e, "gold", "hxc_ttl", "m")
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{e.redis.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	start := e.clock.now().Truncate(time.Second)
	for key, want := range map[string]int64{
		counterKey("test", "hxc_ttl", "m", time.Second, start):                               1,
		counterKey("test", "hxc_ttl", "m", time.Minute, e.clock.now().Truncate(time.Minute)): 60,
	} {
		ttl, err := admin.Do(context.Background(), admin.B().Pttl().Key(key).Build()).AsInt64()
		if err != nil || ttl <= 0 || ttl > want*1000 {
			t.Fatalf("PTTL of %s: %dms, %v; want 1..%d s", key, ttl, err, want)
		}
	}
}

func TestCounterKey(t *testing.T) {
	start := time.Unix(1_800_000_060, 0)
	tests := []struct {
		client, model string
		window        time.Duration
		want          string
	}{
		{"hxc_a", "simple", time.Second, "helixflow:{hxc_a}:6:simple:s:1800000060"},
		{"hxc_a", "", time.Minute, "helixflow:{hxc_a}:0::m:1800000060"},
		// A model name may hold ':' and digits; its length keeps it apart
		// from a shorter model's key.
		{"hxc_a", "x:s:1", time.Second, "helixflow:{hxc_a}:5:x:s:1:s:1800000060"},
	}
	for _, tt := range tests {
		if got := counterKey("helixflow", tt.client, tt.model, tt.window, start); got != tt.want {
			t.Errorf("counterKey(%q, %q, %s) = %q, want %q", tt.client, tt.model, tt.window, got, tt.want)
		}
	}
}

// TestConcurrentCountsExact: every request of many callers is counted once.
func TestConcurrentCountsExact(t *testing.T) {
	e := newEnv(t)
	if err := e.lim.SetPlans(&ir.RateLimit{Domain: "test", Timeout: time.Second, DefaultPlan: "p", Plans: []ir.Plan{{Name: "p", RequestsPerMinute: 500}}}); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 16 {
		wg.Go(func() {
			for range 50 {
				d, err := e.lim.Take(context.Background(), "p", "hxc_c", "m")
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != 500 {
		t.Fatalf("800 concurrent requests on 500/min: %d allowed, want exactly 500", allowed)
	}
}

// TestCallerGone: a Check whose caller went away is not a counter failure
// (no error counted, which an alert watches).
func TestCallerGone(t *testing.T) {
	srv := redistest.Start(t)
	conn := NewRedis(RedisOptions{Address: srv.Addr})
	defer conn.Close()
	reg := prometheus.NewRegistry()
	lim, err := New(conn, testPlans, Options{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	waitConnected(t, &env{conn: conn})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lim.Take(ctx, "free", "hxc_gone", "m"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled: %v, want ErrUnavailable", err)
	}
	srv.Stop()
	if _, err := lim.Take(context.Background(), "free", "hxc_down", "m"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Redis down: %v, want ErrUnavailable", err)
	}
	if got := testutil.ToFloat64(lim.metrics.byResult[resultError]); got != 1 {
		t.Fatalf("errors counted: %v, want 1 (Redis down, not the cancelled caller)", got)
	}
}

// countingRedis counts the calls that reach Redis.
type countingRedis struct {
	*Redis
	calls atomic.Int64
}

func (c *countingRedis) IncrBy(ctx context.Context, incs []Increment) ([]int64, error) {
	c.calls.Add(1)
	return c.Redis.IncrBy(ctx, incs)
}

func redisGet(t *testing.T, addr, key string) int64 {
	t.Helper()
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	n, err := admin.Do(context.Background(), admin.B().Get().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return n
}

var bigPlans = &ir.RateLimit{
	Domain: "test", Timeout: time.Second, DefaultPlan: "big",
	Plans: []ir.Plan{{Name: "big", RequestsPerMinute: 1000}},
}

// TestFarFromLimitCountsLocally: far from its limit a request waits for
// no Redis round trip, yet every request reaches Redis's counter (in
// batches), and the limit holds exactly.
func TestFarFromLimitCountsLocally(t *testing.T) {
	e := newEnv(t)
	counter := &countingRedis{Redis: e.conn}
	lim, err := New(counter, bigPlans, Options{Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for range 1200 {
		d, err := lim.Take(context.Background(), "big", "hxc_local", "m")
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
	}
	calls := counter.calls.Load()
	lim.Close()
	if allowed != 1000 {
		t.Fatalf("1,200 requests on 1,000/min: %d allowed, want exactly 1,000", allowed)
	}
	// Waiting: the first request of the window and those within the sync
	// margin (100) of the limit, each one call; the rest are flushes.
	if calls > 400 {
		t.Fatalf("%d calls to Redis for 1,200 requests: far from the limit they should be counted here", calls)
	}
	key := counterKey("test", "hxc_local", "m", time.Minute, e.clock.now().Truncate(time.Minute))
	if n := redisGet(t, e.redis.Addr, key); n < 1000 {
		t.Fatalf("Redis's counter %d after Close, want every allowed request (1,000) in it", n)
	}
}

// TestReplicasSeeEachOther: two replicas counting far from the limit in
// memory still hold the limit together: near it, Redis decides.
func TestReplicasSeeEachOther(t *testing.T) {
	e := newEnv(t)
	b, err := New(e.conn, bigPlans, Options{Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := e.lim.SetPlans(bigPlans); err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for i := range 1400 {
		lim := e.lim
		if i%2 == 1 {
			lim = b
		}
		d, err := lim.Take(context.Background(), "big", "hxc_two", "m")
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
		if i%2 == 1 {
			time.Sleep(2 * time.Millisecond) // 1,000 requests/s: far below what the margin absorbs
		}
	}
	if allowed != 1000 {
		t.Fatalf("1,400 requests on 1,000/min over two replicas: %d allowed, want exactly 1,000", allowed)
	}
}

// TestRedisDownWhileCountingLocally: a Redis that stops answering is
// found by the next flush, and from then on the failure mode decides.
func TestRedisDownWhileCountingLocally(t *testing.T) {
	e := newEnv(t)
	if err := e.lim.SetPlans(bigPlans); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		take(t, e, "big", "hxc_flush", "m")
	}
	e.redis.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := e.lim.Take(context.Background(), "big", "hxc_flush", "m")
		if errors.Is(err, ErrUnavailable) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Redis down for 5s: requests still counted in memory only")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
