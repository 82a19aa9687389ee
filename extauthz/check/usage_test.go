package check

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/ratelimit"
)

// throttleLog records Config.Usage's calls.
type throttleLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *throttleLog) Throttled(client, model string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, client+"/"+model)
}

// TestUsageCountsThrottled: the usage ledger hears of exactly the
// requests refused over the plan's limit, not those let through, refused
// for other reasons, or refused because the counters are down.
func TestUsageCountsThrottled(t *testing.T) {
	unavailable := fmt.Errorf("%w: connection refused", ratelimit.ErrUnavailable)
	tests := []struct {
		name   string
		limits fakeLimits
		scopes []string
		want   int
	}{
		{"over the plan", fakeLimits{d: ratelimit.Decision{Limit: 5, Reset: time.Second}}, []string{"models:infer"}, 1},
		{"within the plan", fakeLimits{d: ratelimit.Decision{Allowed: true}}, []string{"models:infer"}, 0},
		{"counters down, closed", fakeLimits{err: unavailable}, []string{"models:infer"}, 0},
		{"refused by scope first", fakeLimits{d: ratelimit.Decision{Limit: 5, Reset: time.Second}}, []string{"models:read"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			lim := tt.limits
			e.svc.rateLimits = &lim
			log := &throttleLog{}
			e.svc.usage = log
			tok := e.mint(t, claims(tt.scopes, []string{"*"}))
			if _, err := e.svc.Check(context.Background(), restReq("POST", "/v2/models/resnet/infer", bearerHdr(tok))); err != nil {
				t.Fatal(err)
			}
			if len(log.calls) != tt.want {
				t.Fatalf("usage heard %v, want %d call(s)", log.calls, tt.want)
			}
			if tt.want == 1 && log.calls[0] != "client-a/resnet" {
				t.Fatalf("usage heard %v, want client-a/resnet", log.calls)
			}
		})
	}
}
