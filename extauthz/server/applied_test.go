package server

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// orderRecorder notes when the status line would leave.
type orderRecorder struct {
	*httptest.ResponseRecorder
	events *[]string
}

func (r orderRecorder) WriteHeader(code int) {
	*r.events = append(*r.events, "status")
	r.ResponseRecorder.WriteHeader(code)
}

func (r orderRecorder) Write(b []byte) (int, error) {
	*r.events = append(*r.events, "body")
	return r.ResponseRecorder.Write(b)
}

// A successful change is answered only after the wait; a refusal never
// waits.
func TestApplyingWriter(t *testing.T) {
	for _, tt := range []struct {
		name  string
		write func(http.ResponseWriter)
		want  []string
	}{
		{"created", func(w http.ResponseWriter) { w.WriteHeader(http.StatusCreated); w.Write([]byte("{}")) }, []string{"wait", "status", "body"}},
		{"implicit 200", func(w http.ResponseWriter) { w.Write([]byte("{}")) }, []string{"wait", "status", "body"}},
		{"refused", func(w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized); w.Write([]byte("{}")) }, []string{"status", "body"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var events []string
			w := &applyingWriter{
				ResponseWriter: orderRecorder{httptest.NewRecorder(), &events},
				wait:           func() { events = append(events, "wait") },
			}
			tt.write(w)
			if !slices.Equal(events, tt.want) {
				t.Fatalf("events %v, want %v", events, tt.want)
			}
		})
	}
}
