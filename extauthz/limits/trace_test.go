package limits

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/helixflow/helixflow/internal/redistest"
	"github.com/helixflow/helixflow/internal/telemetry"
	limitsv1 "github.com/helixflow/helixflow/proto/limits/v1"
)

// TestSpendTrace: a stream message's spend, in a sampled request (the
// worker's call), gets a ratelimit span with the real counter's answer;
// the message over the limit says allowed=false.
func TestSpendTrace(t *testing.T) {
	lim := newLimiter(t, redistest.Start(t).Addr, true)
	s := newService(lim, nil)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	for time.Now().Nanosecond() > 500_000_000 {
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 6 {
		ctx, span := tp.Tracer("test").Start(t.Context(), "Spend")
		if _, err := s.Spend(ctx, &limitsv1.SpendRequest{ClientId: "free", Model: "m", Credential: "jti:t1", Count: 1}); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		span.End()
	}
	var rl []sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		if sp.Name() == telemetry.SpanRateLimit {
			rl = append(rl, sp)
		}
	}
	if len(rl) != 6 {
		t.Fatalf("%d ratelimit spans, want one per message", len(rl))
	}
	for i, sp := range rl {
		a := map[string]string{}
		for _, kv := range sp.Attributes() {
			a[string(kv.Key)] = kv.Value.Emit()
		}
		wantAllowed, wantRemaining := "true", 4-i
		if i == 5 {
			wantAllowed, wantRemaining = "false", 0
		}
		if a[string(telemetry.AttrRateLimitAllowed)] != wantAllowed || a[string(telemetry.AttrRateLimitLimit)] != "5" ||
			a[string(telemetry.AttrRateLimitRemaining)] != strconv.Itoa(wantRemaining) || !strings.Contains(a[string(telemetry.AttrRateLimitKey)], "{free}") {
			t.Errorf("message %d: ratelimit span %v, want allowed=%s limit 5 remaining %d, the client's counter", i+1, a, wantAllowed, wantRemaining)
		}
		if !sp.Parent().IsValid() {
			t.Errorf("message %d: ratelimit span without parent", i+1)
		}
	}
}
