package limits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/redistest"
	limitsv1 "github.com/helixflow/helixflow/proto/limits/v1"
	"github.com/helixflow/helixflow/xds/ir"
)

// The directories below stand in for helix-authz's in-memory copies
// (credentials.Clients, Revocations, APIKeys; the server package's tests
// use the real ones over Postgres); the counters are real Redis.
type clientsMap map[string]*store.Client

func (m clientsMap) GetClient(_ context.Context, id string) (*store.Client, error) {
	if id == "down" {
		return nil, fmt.Errorf("look up client: %w", store.ErrUnavailable)
	}
	if c, ok := m[id]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("client %q: %w", id, store.ErrNotFound)
}

type revokedSet map[string]bool

func (s revokedSet) IsRevoked(_ context.Context, id string) (bool, error) {
	if id == "down" {
		return false, errors.New("revocations unavailable")
	}
	return s[id], nil
}

type keysMap map[string]*store.APIKey

func (m keysMap) Key(_ context.Context, prefix string) (*store.APIKey, error) {
	if k, ok := m[prefix]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("api key %q: %w", prefix, store.ErrNotFound)
}

type throttleLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *throttleLog) Throttled(client, model string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, client+"/"+model)
}

func plans(failClosed bool) *ir.RateLimit {
	return &ir.RateLimit{Domain: "limitstest", Timeout: 100 * time.Millisecond, FailureModeDeny: failClosed, DefaultPlan: "basic",
		Plans: []ir.Plan{{Name: "free", RequestsPerSecond: 5}, {Name: "basic", RequestsPerSecond: 1000}, {Name: "pro", RequestsPerMinute: 100000}}}
}

func newLimiter(t *testing.T, addr string, failClosed bool) *ratelimit.Limiter {
	t.Helper()
	redis := ratelimit.NewRedis(ratelimit.RedisOptions{Address: addr, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(redis.Close)
	lim, err := ratelimit.New(redis, plans(failClosed), ratelimit.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	// Redis connects in the background: wait until it counts.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := lim.Take(t.Context(), "basic", "warmup", "m"); err == nil {
			return lim
		}
		if time.Now().After(deadline) {
			t.Fatal("Redis never answered")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	past   = time.Now().Add(-time.Hour)
	future = time.Now().Add(time.Hour)
)

func newService(lim *ratelimit.Limiter, usage *throttleLog) *Service {
	cfg := Config{
		Clients: clientsMap{
			"c1":       {ID: "c1", Plan: "basic", Enabled: true, Models: []string{"*"}},
			"free":     {ID: "free", Plan: "free", Enabled: true, Models: []string{"*"}},
			"noplan":   {ID: "noplan", Enabled: true, Models: []string{"*"}},
			"off":      {ID: "off", Plan: "basic", Enabled: false, Models: []string{"*"}},
			"narrowed": {ID: "narrowed", Plan: "basic", Enabled: true, Models: []string{"other"}},
		},
		Revocations: revokedSet{"gone": true, "sid:ended": true},
		APIKeys: keysMap{
			"good":    {Prefix: "good", ClientID: "c1", ExpiresAt: &future},
			"forever": {Prefix: "forever", ClientID: "c1"},
			"expired": {Prefix: "expired", ClientID: "c1", ExpiresAt: &past},
			"revoked": {Prefix: "revoked", ClientID: "c1", RevokedAt: &past},
			"theirs":  {Prefix: "theirs", ClientID: "free"},
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	if lim != nil {
		cfg.RateLimits = lim
	}
	if usage != nil {
		cfg.Usage = usage
	}
	return New(cfg)
}

func TestSpend(t *testing.T) {
	lim := newLimiter(t, redistest.Start(t).Addr, true)
	s := newService(lim, nil)
	ok, rev := limitsv1.SpendResponse_ALLOWED, limitsv1.SpendResponse_REVOKED
	for _, tc := range []struct {
		name                string
		client, model, cred string
		count               uint32
		verdict             limitsv1.SpendResponse_Verdict
		code                codes.Code
	}{
		{"token", "c1", "m", "jti:t1", 1, ok, codes.OK},
		{"token, re-check only", "c1", "", "jti:t1", 0, ok, codes.OK},
		{"api key", "c1", "m", "key:good", 1, ok, codes.OK},
		{"api key without expiry", "c1", "m", "key:forever", 1, ok, codes.OK},
		{"client without a plan: the default plan", "noplan", "m", "jti:t2", 1, ok, codes.OK},
		{"revoked token", "c1", "m", "jti:gone", 1, rev, codes.OK},
		{"revoked token, re-check", "c1", "", "jti:gone", 0, rev, codes.OK},
		{"a person's token in a live session", "c1", "m", "jti:t3;sid:live", 1, ok, codes.OK},
		{"a person's token whose session ended", "c1", "m", "jti:t3;sid:ended", 1, rev, codes.OK},
		{"expired key", "c1", "m", "key:expired", 1, rev, codes.OK},
		{"revoked key", "c1", "m", "key:revoked", 1, rev, codes.OK},
		{"deleted key", "c1", "m", "key:nosuch", 1, rev, codes.OK},
		{"another client's key", "c1", "m", "key:theirs", 1, rev, codes.OK},
		{"disabled client", "off", "m", "jti:t1", 1, rev, codes.OK},
		{"deleted client", "nosuch", "m", "jti:t1", 1, rev, codes.OK},
		{"model taken from the client", "narrowed", "m", "jti:t1", 1, rev, codes.OK},
		{"model still allowed", "narrowed", "other", "jti:t1", 1, ok, codes.OK},
		{"client lookup down", "down", "m", "jti:t1", 1, 0, codes.Unavailable},
		{"revocations down", "c1", "m", "jti:down", 1, 0, codes.Unavailable},
		{"no client", "", "m", "jti:t1", 1, 0, codes.InvalidArgument},
		{"no credential", "c1", "m", "", 1, 0, codes.InvalidArgument},
		{"unknown credential kind", "c1", "m", "sid:s1", 1, 0, codes.InvalidArgument},
		{"empty token id", "c1", "m", "jti:", 1, 0, codes.InvalidArgument},
		{"empty session id", "c1", "m", "jti:t1;sid:", 1, 0, codes.InvalidArgument},
		{"no model", "c1", "", "jti:t1", 1, 0, codes.InvalidArgument},
		{"bad model", "c1", "../x", "jti:t1", 1, 0, codes.InvalidArgument},
		{"count too big", "c1", "m", "jti:t1", maxCount + 1, 0, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.Spend(t.Context(), &limitsv1.SpendRequest{ClientId: tc.client, Model: tc.model, Credential: tc.cred, Count: tc.count})
			if status.Code(err) != tc.code {
				t.Fatalf("Spend: %v, want %v", err, tc.code)
			}
			if err == nil && resp.GetVerdict() != tc.verdict {
				t.Fatalf("verdict %v (%q), want %v", resp.GetVerdict(), resp.GetReason(), tc.verdict)
			}
			if resp.GetVerdict() == rev && resp.GetReason() == "" {
				t.Fatal("REVOKED without a reason")
			}
		})
	}
}

// TestSpendOverLimit: the sixth message within a second on a 5/s plan is
// OVER_LIMIT with the window's numbers, counted as throttled; a re-check
// (count 0) takes nothing and stays ALLOWED; another model has its own
// counter.
func TestSpendOverLimit(t *testing.T) {
	lim := newLimiter(t, redistest.Start(t).Addr, true)
	usage := &throttleLog{}
	s := newService(lim, usage)
	for time.Now().Nanosecond() > 500_000_000 {
		time.Sleep(10 * time.Millisecond)
	}
	spend := func(model string, n uint32) *limitsv1.SpendResponse {
		t.Helper()
		resp, err := s.Spend(t.Context(), &limitsv1.SpendRequest{ClientId: "free", Model: model, Credential: "jti:t1", Count: n})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := range 5 {
		resp := spend("m", 1)
		if resp.GetVerdict() != limitsv1.SpendResponse_ALLOWED || resp.GetLimit() != 5 || resp.GetRemaining() != uint32(4-i) {
			t.Fatalf("message %d: %v", i+1, resp)
		}
	}
	if resp := spend("m", 0); resp.GetVerdict() != limitsv1.SpendResponse_ALLOWED {
		t.Fatalf("re-check: %v", resp)
	}
	resp := spend("m", 1)
	if resp.GetVerdict() != limitsv1.SpendResponse_OVER_LIMIT || resp.GetLimit() != 5 || resp.GetRemaining() != 0 {
		t.Fatalf("6th message: %v", resp)
	}
	if reset := time.UnixMilli(resp.GetResetUnixMs()); reset.Before(time.Now().Add(-time.Second)) || reset.After(time.Now().Add(time.Second)) {
		t.Fatalf("reset %v, want within the second", reset)
	}
	if resp := spend("other", 1); resp.GetVerdict() != limitsv1.SpendResponse_ALLOWED {
		t.Fatalf("another model: %v", resp)
	}
	usage.mu.Lock()
	defer usage.mu.Unlock()
	if len(usage.seen) != 1 || usage.seen[0] != "free/m" {
		t.Fatalf("throttled counted %v, want [free/m]", usage.seen)
	}
}

// TestSpendFailureMode: with Redis gone, the gateway's failure mode
// decides as it does for Check: open lets the message pass, closed answers
// UNAVAILABLE. Credentials are still checked either way.
func TestSpendFailureMode(t *testing.T) {
	for _, closed := range []bool{false, true} {
		t.Run(fmt.Sprintf("closed=%v", closed), func(t *testing.T) {
			redis := redistest.Start(t)
			s := newService(newLimiter(t, redis.Addr, closed), nil)
			redis.Stop()
			resp, err := s.Spend(t.Context(), &limitsv1.SpendRequest{ClientId: "c1", Model: "m", Credential: "jti:t1", Count: 1})
			switch {
			case closed && status.Code(err) != codes.Unavailable:
				t.Fatalf("fail closed: %v %v, want Unavailable", resp, err)
			case !closed && (err != nil || resp.GetVerdict() != limitsv1.SpendResponse_ALLOWED):
				t.Fatalf("fail open: %v %v, want ALLOWED", resp, err)
			}
			resp, err = s.Spend(t.Context(), &limitsv1.SpendRequest{ClientId: "c1", Model: "m", Credential: "jti:gone", Count: 1})
			if err != nil || resp.GetVerdict() != limitsv1.SpendResponse_REVOKED {
				t.Fatalf("revoked token with Redis down: %v %v", resp, err)
			}
		})
	}
}

// TestSpendWithoutPlans: no ratelimit section, nothing counted.
func TestSpendWithoutPlans(t *testing.T) {
	s := newService(nil, nil)
	for range 20 {
		resp, err := s.Spend(t.Context(), &limitsv1.SpendRequest{ClientId: "free", Model: "m", Credential: "jti:t1", Count: 1})
		if err != nil || resp.GetVerdict() != limitsv1.SpendResponse_ALLOWED {
			t.Fatalf("%v %v", resp, err)
		}
	}
}
