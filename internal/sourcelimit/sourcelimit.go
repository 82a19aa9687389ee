// Package sourcelimit limits requests per source address: a token bucket
// (golang.org/x/time/rate) per address, kept in a bounded LRU
// (hashicorp/golang-lru/v2), so that one address flooding an endpoint is
// refused before it costs anything, and every other address keeps being
// served.
//
// The source is the TCP peer. X-Forwarded-For is believed only when the
// peer is one of Config.TrustedProxies, and then only up to the first
// address (from the right) that is not a trusted proxy: the entries to its
// left were written by the client and prove nothing. IPv6 sources count
// per /64, the block one subscriber gets, so that an attacker cannot spread
// a flood over the addresses of its own block (or churn the LRU with them).
//
// When the LRU is full the least recently seen source is forgotten; a
// source that comes back starts with a full bucket. Size MaxSources well
// above the number of addresses active at once.
package sourcelimit

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Defaults of a Config's zero fields.
const (
	DefaultMaxSources = 10000
	// IPv6PrefixBits groups IPv6 sources.
	IPv6PrefixBits = 64
)

// Config configures a Limiter.
type Config struct {
	// Rate is the sustained requests per second per source (> 0).
	Rate float64
	// Burst is how many requests a source may send at once (>= 1).
	Burst int
	// MaxSources bounds the sources remembered (DefaultMaxSources when 0).
	MaxSources int
	// TrustedProxies are the peers whose X-Forwarded-For is believed;
	// none by default.
	TrustedProxies []netip.Prefix
	// Name labels the metrics (limiter="<Name>"); required with Registerer.
	Name string
	// Registerer receives helix_source_limited_total when set.
	Registerer prometheus.Registerer
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Limiter decides per source address. It is safe for concurrent use.
type Limiter struct {
	rate    rate.Limit
	burst   int
	sources Sources
	now     func() time.Time
	refused prometheus.Counter

	// mu makes "get, or add a new bucket" one step; the buckets lock
	// themselves.
	mu      sync.Mutex
	buckets *lru.Cache[netip.Addr, *rate.Limiter]
}

// Validate says what is wrong with cfg, or nil.
func (cfg Config) Validate() error {
	switch {
	case !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0):
		return fmt.Errorf("sourcelimit: rate %v must be a positive number", cfg.Rate)
	case cfg.Burst < 1:
		return fmt.Errorf("sourcelimit: burst %d must be at least 1", cfg.Burst)
	case cfg.MaxSources < 0:
		return fmt.Errorf("sourcelimit: max sources %d is negative", cfg.MaxSources)
	case cfg.Registerer != nil && cfg.Name == "":
		return errors.New("sourcelimit: a name is required for the metrics")
	}
	return nil
}

// New checks cfg and returns a Limiter.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxSources == 0 {
		cfg.MaxSources = DefaultMaxSources
	}
	buckets, err := lru.New[netip.Addr, *rate.Limiter](cfg.MaxSources)
	if err != nil {
		return nil, fmt.Errorf("sourcelimit: %w", err)
	}
	l := &Limiter{
		rate: rate.Limit(cfg.Rate), burst: cfg.Burst, now: cfg.Now, buckets: buckets,
		sources: Sources{Trusted: cfg.TrustedProxies},
	}
	if l.now == nil {
		l.now = time.Now
	}
	if cfg.Registerer != nil {
		l.refused = prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "helix_source_limited_total",
			Help:        "Requests refused because their source address exceeded its rate (429).",
			ConstLabels: prometheus.Labels{"limiter": cfg.Name},
		})
		if err := cfg.Registerer.Register(l.refused); err != nil {
			return nil, fmt.Errorf("sourcelimit: register metrics: %w", err)
		}
	}
	return l, nil
}

// ParsePrefixes parses a comma-separated list of CIDR prefixes or single
// addresses (a flag's value); "" is none.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked())
	}
	return out, nil
}

// Allow takes a token for source and, when there is none, says how long
// until there will be.
func (l *Limiter) Allow(source netip.Addr) (ok bool, retryAfter time.Duration) {
	key := Key(source)
	l.mu.Lock()
	b, found := l.buckets.Get(key)
	if !found {
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets.Add(key, b)
	}
	l.mu.Unlock()
	now := l.now()
	if b.AllowN(now, 1) {
		return true, 0
	}
	if l.refused != nil {
		l.refused.Inc()
	}
	wait := (1 - b.TokensAt(now)) / float64(l.rate)
	return false, time.Duration(wait * float64(time.Second))
}

// Key is the unit a source is counted as: the address, or its /64 for
// IPv6 (one subscriber's block). Other per-source counters (throttles)
// use it too, so an IPv6 attacker cannot spread over its block.
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(IPv6PrefixBits)
		return p.Addr()
	}
	return a
}

// Source is the request's source address (Sources.Source with the
// limiter's trusted proxies); ok is false when the peer address cannot be
// parsed.
func (l *Limiter) Source(r *http.Request) (netip.Addr, bool) { return l.sources.Source(r) }

// Refuse writes the answer to a refused request; retryAfter is at least
// one second.
type Refuse func(w http.ResponseWriter, r *http.Request, retryAfter time.Duration)

// Handler serves next for requests whose source has a token and answers
// the others with refuse. A request whose source cannot be told (no
// address) is refused too: fail closed.
func (l *Limiter) Handler(next http.Handler, refuse Refuse) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src, ok := l.Source(r)
		if !ok {
			refuse(w, r, time.Second)
			return
		}
		allowed, wait := l.Allow(src)
		if !allowed {
			refuse(w, r, max(wait, time.Second))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// RetryAfter is d in whole seconds, rounded up, for a Retry-After header.
func RetryAfter(d time.Duration) string {
	return fmt.Sprint(int64(math.Ceil(max(d, time.Second).Seconds())))
}
