package oauth

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// BenchmarkIssueToken measures the whole token endpoint (form parsing,
// client authentication with the peppered HMAC, scope and audience checks,
// ES256 signing, JSON response) with in-memory stores, and reports
// tokens/s.
func BenchmarkIssueToken(b *testing.B) {
	e := newEnv(b, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		c.Now = time.Now
	})
	body := "grant_type=client_credentials&scope=models%3Ainfer"
	// issue may run on RunParallel's goroutines, hence Errorf, not Fatalf.
	issue := func(b *testing.B) {
		r := httptest.NewRequest(http.MethodPost, PathToken, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth("alpha", e.secrets["alpha"])
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Errorf("status %d: %s", w.Code, w.Body)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			issue(b)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				issue(b)
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tokens/s")
	})
}
