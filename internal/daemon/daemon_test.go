package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oklog/run"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/helixflow/helixflow/internal/httpserver"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// TestRun: a cancelled context stops the group cleanly, after the request
// in flight has had its answer; a server that fails ends the group with
// its error.
func TestRun(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t.Run("stop drains", func(t *testing.T) {
		started, release := make(chan struct{}), make(chan struct{})
		srv := httpserver.New(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			close(started)
			<-release
			_, _ = io.WriteString(w, "done")
		}), log)
		lis := listen(t)
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, health.NewServer())
		ctx, cancel := context.WithCancel(t.Context())
		var g run.Group
		g.Add(run.ContextHandler(ctx))
		g.Add(HTTP(srv, lis, 10*time.Second, log))
		g.Add(GRPC(gs, listen(t), 10*time.Second, log))
		ended := make(chan error, 1)
		go func() { ended <- Run(&g) }()

		answer := make(chan string, 1)
		go func() {
			resp, err := http.Get("http://" + lis.Addr().String())
			if err != nil {
				answer <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answer <- string(b)
		}()
		<-started
		cancel()
		select {
		case err := <-ended:
			t.Fatalf("Run ended (%v) with a request in flight", err)
		case <-time.After(100 * time.Millisecond):
		}
		close(release)
		if got := <-answer; got != "done" {
			t.Errorf("request in flight got %q", got)
		}
		if err := <-ended; err != nil {
			t.Errorf("Run = %v after a requested stop", err)
		}
	})
	t.Run("a failed server ends the group", func(t *testing.T) {
		lis := listen(t)
		lis.Close() // Serve fails at once
		var g run.Group
		g.Add(run.ContextHandler(t.Context()))
		g.Add(HTTP(httpserver.New(http.NotFoundHandler(), log), lis, time.Second, log))
		if err := Run(&g); err == nil || !strings.Contains(err.Error(), "HTTP server on 127.0.0.1:") || errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want the server's error", err)
		}
	})
	t.Run("gRPC streams are cut after the timeout", func(t *testing.T) {
		lis := listen(t)
		gs := grpc.NewServer()
		hs := health.NewServer()
		healthpb.RegisterHealthServer(gs, hs)
		ctx, cancel := context.WithCancel(t.Context())
		var g run.Group
		g.Add(run.ContextHandler(ctx))
		g.Add(GRPC(gs, lis, 100*time.Millisecond, log))
		ended := make(chan error, 1)
		go func() { ended <- Run(&g) }()
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		watch, err := healthpb.NewHealthClient(conn).Watch(t.Context(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := watch.Recv(); err != nil { // the stream is open
			t.Fatal(err)
		}
		cancel()
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a never-ending stream kept the server up")
		}
	})
}
