package sourcelimit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type clock struct{ t atomic.Pointer[time.Time] }

func newClock() *clock {
	c := &clock{}
	c.set(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	return c
}
func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

func mustNew(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestNewConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"zero rate":        {Rate: 0, Burst: 1},
		"negative rate":    {Rate: -1, Burst: 1},
		"NaN rate":         {Rate: nan(), Burst: 1},
		"zero burst":       {Rate: 1},
		"negative sources": {Rate: 1, Burst: 1, MaxSources: -1},
		"metrics, no name": {Rate: 1, Burst: 1, Registerer: prometheus.NewRegistry()},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	reg := prometheus.NewRegistry()
	mustNew(t, Config{Rate: 1, Burst: 1, Name: "a", Registerer: reg})
	if _, err := New(Config{Rate: 1, Burst: 1, Name: "a", Registerer: reg}); err == nil {
		t.Error("a second limiter of the same name registered")
	}
}

func nan() float64 { var z float64; return z / z }

func TestAllowPerSource(t *testing.T) {
	c := newClock()
	reg := prometheus.NewRegistry()
	l := mustNew(t, Config{Rate: 2, Burst: 3, Name: "test", Registerer: reg, Now: c.now})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range 3 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := l.Allow(a)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over the burst: ok=%v wait=%s, want refused for 500ms", ok, wait)
	}
	if ok, _ := l.Allow(b); !ok {
		t.Fatal("another source refused")
	}
	c.add(500 * time.Millisecond)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("refill not honoured")
	}
	if got := testutil.ToFloat64(l.refused); got != 1 {
		t.Fatalf("refused counter %v, want 1", got)
	}
}

func TestIPv6Per64(t *testing.T) {
	l := mustNew(t, Config{Rate: 1, Burst: 1, Now: newClock().now})
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:1:2::1")); !ok {
		t.Fatal("first refused")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:1:2:ffff::9")); ok {
		t.Fatal("another address of the same /64 has its own bucket")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Fatal("another /64 refused")
	}
	// An IPv4-mapped address is the IPv4 address.
	if ok, _ := l.Allow(netip.MustParseAddr("192.0.2.7")); !ok {
		t.Fatal("v4 refused")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("::ffff:192.0.2.7")); ok {
		t.Fatal("v4-mapped has its own bucket")
	}
}

func TestLRUBounded(t *testing.T) {
	l := mustNew(t, Config{Rate: 1, Burst: 1, MaxSources: 2, Now: newClock().now})
	for _, s := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		l.Allow(netip.MustParseAddr(s))
	}
	if n := l.buckets.Len(); n != 2 {
		t.Fatalf("%d sources kept, want 2", n)
	}
	// The oldest was forgotten: it starts again with a full bucket.
	if ok, _ := l.Allow(netip.MustParseAddr("192.0.2.1")); !ok {
		t.Fatal("forgotten source refused")
	}
}

func TestSource(t *testing.T) {
	proxies, err := ParsePrefixes("10.0.0.0/8, 192.0.2.9 ,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	trusting := Sources{Trusted: proxies}
	plain := Sources{}
	tests := []struct {
		name   string
		l      Sources
		remote string
		xff    []string
		want   string
	}{
		{"peer", plain, "198.51.100.1:443", nil, "198.51.100.1"},
		{"XFF ignored by default", plain, "10.1.1.1:443", []string{"203.0.113.5"}, "10.1.1.1"},
		{"XFF from an untrusted peer ignored", trusting, "198.51.100.1:443", []string{"203.0.113.5"}, "198.51.100.1"},
		{"trusted proxy", trusting, "10.1.1.1:443", []string{"203.0.113.5"}, "203.0.113.5"},
		{"client-written entries to the left ignored", trusting, "10.1.1.1:443", []string{"1.2.3.4, 203.0.113.5"}, "203.0.113.5"},
		{"chain of trusted proxies", trusting, "10.1.1.1:443", []string{"203.0.113.5, 10.2.2.2", "192.0.2.9"}, "203.0.113.5"},
		{"only proxies", trusting, "10.1.1.1:443", []string{"10.2.2.2"}, "10.1.1.1"},
		{"no XFF", trusting, "10.1.1.1:443", nil, "10.1.1.1"},
		{"garbage from the proxy", trusting, "10.1.1.1:443", []string{"203.0.113.5, junk"}, "10.1.1.1"},
		{"IPv6 peer", plain, "[2001:db8::1%eth0]:443", nil, "2001:db8::1"},
		{"v4-mapped peer", plain, "[::ffff:198.51.100.1]:443", nil, "198.51.100.1"},
		{"no port", plain, "198.51.100.1", nil, "198.51.100.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got, ok := tt.l.Source(r)
			if !ok || got.String() != tt.want {
				t.Fatalf("source %v (%v), want %s", got, ok, tt.want)
			}
		})
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "not an address"
	if _, ok := plain.Source(r); ok {
		t.Fatal("unparsable peer accepted")
	}
}

// The limiter tells sources by the same rule, with its trusted proxies.
func TestLimiterSource(t *testing.T) {
	proxies, err := ParsePrefixes("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	l := mustNew(t, Config{Rate: 1, Burst: 1, TrustedProxies: proxies})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.1.1.1:443"
	r.Header.Set("X-Forwarded-For", "203.0.113.5")
	if got, ok := l.Source(r); !ok || got.String() != "203.0.113.5" {
		t.Fatalf("source %v (%v), want 203.0.113.5", got, ok)
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes(" ,::ffff:10.0.0.1, 10.0.0.0/8")
	if err != nil || len(got) != 2 || got[0].String() != "10.0.0.1/32" || got[1].String() != "10.0.0.0/8" {
		t.Fatalf("%v %v", got, err)
	}
	if got, err := ParsePrefixes(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	if _, err := ParsePrefixes("10.0.0.0/8,example.com"); err == nil || !strings.Contains(err.Error(), "example.com") {
		t.Fatalf("bad entry: %v", err)
	}
}

func TestHandler(t *testing.T) {
	l := mustNew(t, Config{Rate: 1, Burst: 2, Now: newClock().now})
	var served atomic.Int64
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) })
	var waits []time.Duration
	h := l.Handler(next, func(w http.ResponseWriter, _ *http.Request, d time.Duration) {
		waits = append(waits, d)
		w.Header().Set("Retry-After", RetryAfter(d))
		w.WriteHeader(http.StatusTooManyRequests)
	})
	do := func(remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for range 2 {
		if w := do("192.0.2.1:1"); w.Code != http.StatusOK {
			t.Fatalf("within the burst: %d", w.Code)
		}
	}
	w := do("192.0.2.1:2")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("over the burst: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if w := do("192.0.2.2:1"); w.Code != http.StatusOK {
		t.Fatalf("another source: %d", w.Code)
	}
	if w := do("garbage"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("unknown source: %d", w.Code)
	}
	if served.Load() != 3 || len(waits) != 2 || waits[0] < time.Second {
		t.Fatalf("served %d, refusals %v", served.Load(), waits)
	}
}

func TestRetryAfter(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1", 1500 * time.Millisecond: "2", time.Minute: "60"} {
		if got := RetryAfter(d); got != want {
			t.Errorf("RetryAfter(%s) = %s, want %s", d, got, want)
		}
	}
}

// BenchmarkAllow is the cost the limit adds to each request.
func BenchmarkAllow(b *testing.B) {
	l, err := New(Config{Rate: 1e9, Burst: 1e9})
	if err != nil {
		b.Fatal(err)
	}
	src := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow(src)
		}
	})
}

func TestSourcesString(t *testing.T) {
	for _, tt := range []struct{ remote, want string }{
		{"192.0.2.7:4242", "192.0.2.7"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"not an address", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tt.remote
		if got := (Sources{}).String(r); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.remote, got, tt.want)
		}
	}
}
