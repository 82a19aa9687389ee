// Package daemon is how HelixFlow's daemons (helix-xds, helix-authz,
// helix-worker) start and stop. Each long-running part is an actor of one
// github.com/oklog/run group: the caller's context (cancelled on SIGINT or
// SIGTERM), each server, each background loop. The first actor to end
// interrupts the others, in the order they were added (oklog/run's
// deterministic teardown), and each server drains within its own
// shutdown timeout.
//
//	var g run.Group
//	g.Add(run.ContextHandler(ctx))
//	g.Add(daemon.HTTP(srv, lis, 5*time.Second, log))
//	g.Add(daemon.GRPC(gs, lis, 2*time.Second, log))
//	return daemon.Run(&g)
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/oklog/run"
	"google.golang.org/grpc"
)

// Run runs g until every actor has ended. A stop the caller asked for (its
// context cancelled, which is how a signal arrives) is not an error; the
// error of anything else that ended the group is returned.
func Run(g *run.Group) error {
	err := g.Run()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// HTTP is an actor serving srv on lis. Interrupted, it stops taking
// connections and lets requests in flight finish for up to timeout; the
// actor ends when they have (or the time is up, which goes to log).
func HTTP(srv *http.Server, lis net.Listener, timeout time.Duration, log *slog.Logger) (execute func() error, interrupt func(error)) {
	drained := make(chan error, 1)
	return func() error {
			if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("HTTP server on %s: %w", lis.Addr(), err)
			}
			return <-drained
		}, func(error) {
			// Shutdown waits for the requests; run it aside so that the
			// other actors are interrupted at once and drain together.
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				err := srv.Shutdown(ctx)
				if err != nil {
					err = fmt.Errorf("HTTP server on %s: requests still running after %v were ended: %w", lis.Addr(), timeout, err)
					log.Warn("shutdown", "error", err)
				}
				drained <- err
			}()
		}
}

// GRPC is an actor serving gs on lis. Interrupted, it lets RPCs in flight
// finish for up to timeout, then closes the rest (streams that never end
// by themselves, such as ADS, among them; that goes to log).
func GRPC(gs *grpc.Server, lis net.Listener, timeout time.Duration, log *slog.Logger) (execute func() error, interrupt func(error)) {
	drained := make(chan error, 1)
	return func() error {
			if err := gs.Serve(lis); err != nil {
				return fmt.Errorf("gRPC server on %s: %w", lis.Addr(), err)
			}
			return <-drained
		}, func(error) {
			go func() {
				stopped := make(chan struct{})
				go func() { gs.GracefulStop(); close(stopped) }()
				t := time.NewTimer(timeout)
				defer t.Stop()
				select {
				case <-stopped:
					drained <- nil
				case <-t.C:
					gs.Stop()
					err := fmt.Errorf("gRPC server on %s: RPCs still running after %v were ended", lis.Addr(), timeout)
					log.Warn("shutdown", "error", err)
					drained <- err
				}
			}()
		}
}
