package oauth

import (
	"context"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/token"
)

func TestWaitPastCutoff(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name        string
		ctx         context.Context
		cutoff      time.Duration // from now; 0: none
		unavailable bool
		err         bool
	}{
		{name: "no cutoff", ctx: context.Background()},
		{name: "cutoff seconds ago", ctx: context.Background(), cutoff: -3 * time.Second},
		{name: "cutoff this second", ctx: context.Background(), cutoff: time.Nanosecond},
		{name: "cutoff far ahead: clock behind the database", ctx: context.Background(), cutoff: time.Minute, err: true, unavailable: true},
		{name: "caller gone", ctx: canceled, cutoff: time.Second, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cutoff time.Time
			if tt.cutoff != 0 {
				cutoff = time.Now().Add(tt.cutoff)
			}
			err := waitPastCutoff(tt.ctx, time.Now, cutoff)
			if (err != nil) != tt.err {
				t.Fatalf("waitPastCutoff: %v, want error %v", err, tt.err)
			}
			if isUnavailable(err) != tt.unavailable {
				t.Fatalf("waitPastCutoff: %v, want unavailable %v", err, tt.unavailable)
			}
			if err == nil && !token.IssuedAfter(time.Now(), cutoff) {
				t.Fatalf("a token issued after the wait would not count against cutoff %v", cutoff)
			}
		})
	}
}
