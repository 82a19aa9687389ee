package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"time"
)

// applyWait bounds how long an admin change waits for this replica's
// copies to hold it.
const applyWait = 2 * time.Second

// readYourWrites holds the admin API's answer to a successful change until
// this replica's in-memory copies hold it: since an unknown client id or
// API key costs no database query, a client or key is usable once its
// notification arrives, and an admin who created one here can use it here
// at once. Other replicas follow within the notification delay.
func (s *Server) readYourWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&applyingWriter{ResponseWriter: w, wait: func() {
			ctx, cancel := context.WithTimeout(r.Context(), applyWait)
			defer cancel()
			if err := s.caughtUp(ctx); err != nil {
				s.log.Warn("admin change not seen by this replica's copies yet", "error", err)
			}
		}}, r)
	})
}

// caughtUp returns once this replica has applied every change committed
// before the call: it announces a mark and waits for it, since
// notifications arrive in commit order and are applied one at a time.
func (s *Server) caughtUp(ctx context.Context) error {
	id := rand.Text()
	ch := make(chan struct{})
	s.marks.Store(id, ch)
	defer s.marks.Delete(id)
	if err := s.Store.Mark(ctx, id); err != nil {
		return fmt.Errorf("announce mark: %w", err)
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for mark: %w", ctx.Err())
	}
}

// marked tells the waiter of mark id (if any, on this replica) that it
// arrived.
func (s *Server) marked(id string) {
	if ch, ok := s.marks.LoadAndDelete(id); ok {
		close(ch.(chan struct{}))
	}
}

// applyingWriter runs wait before a success status goes out, so that the
// answer to a change reaches the admin only once the change is applied
// here. Only successes wait: a refused request (a wrong admin token) must
// cost no database work.
type applyingWriter struct {
	http.ResponseWriter
	wait    func()
	decided bool
}

func (w *applyingWriter) WriteHeader(code int) {
	if !w.decided {
		w.decided = true
		if code < 300 {
			w.wait()
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *applyingWriter) Write(b []byte) (int, error) {
	if !w.decided {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}
