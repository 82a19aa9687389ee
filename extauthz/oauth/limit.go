package oauth

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/helixflow/helixflow/internal/sourcelimit"
)

// LimitSources puts l in front of the /oauth2/ endpoints of h (a
// Server's Handler): a source address over its rate is answered 429 with
// Retry-After and an RFC 6749 style error before its request is parsed or
// any client is looked up. The metadata and the JWKS, which verifiers
// fetch and cache, are not limited.
func LimitSources(h http.Handler, l *sourcelimit.Limiter) http.Handler {
	limited := l.Handler(h, writeRateLimited)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/oauth2/") {
			limited.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeRateLimited(w http.ResponseWriter, _ *http.Request, retryAfter time.Duration) {
	after := sourcelimit.RetryAfter(retryAfter)
	h := w.Header()
	h.Set("Retry-After", after)
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	writeJSON(w, http.StatusTooManyRequests, errorBody{
		Error:       codeUnavailable,
		Description: fmt.Sprintf("Too many requests from this address; retry after %s s.", after),
	})
}
