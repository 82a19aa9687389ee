package httpserver

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestLimits: a server from New refuses headers over MaxHeaderBytes with
// 431, serves normal requests, and sends its own errors to the logger.
func TestLimits(t *testing.T) {
	var logged bytes.Buffer
	srv := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("handler bug")
		}
		fmt.Fprint(w, "ok")
	}),
		slog.New(slog.NewTextHandler(&logged, nil)))
	if srv.ReadHeaderTimeout != ReadHeaderTimeout || srv.ReadTimeout != ReadTimeout || srv.WriteTimeout != WriteTimeout ||
		srv.IdleTimeout != IdleTimeout || srv.MaxHeaderBytes != MaxHeaderBytes {
		t.Fatalf("limits not set: %+v", srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	url := "http://" + ln.Addr().String() + "/"

	get := func(header string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("X-Big", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("small"); code != http.StatusOK {
		t.Fatalf("normal request: %d", code)
	}
	// Go allows 4 KiB of slack over MaxHeaderBytes; twice the limit is over.
	if code := get(strings.Repeat("x", 2*MaxHeaderBytes)); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized headers: %d, want 431", code)
	}

	// The server's own errors (here a handler's panic) reach the logger.
	if _, err := http.Get(url + "panic"); err == nil {
		t.Fatal("a panicking handler answered")
	}
	srv.Shutdown(context.Background())
	if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "handler bug") {
		t.Fatalf("server error not logged as a warning: %q", logged.String())
	}
}
