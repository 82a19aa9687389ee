// Command kservenoop is the no-op KServe v2 gRPC server `make bench-worker`
// measures helix-worker against (bench/bench_worker.py starts it): the
// worker's protos and gRPC server options, no scheduler, no backend
// (bench/kservenoop/noop). Plaintext, on a loopback address only.
//
//	go run -tags=vtprotobuf ./bench/kservenoop --model-repository models --model simple,mlp --address 127.0.0.1:8101
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/oklog/run"
	"google.golang.org/grpc"

	"github.com/helixflow/helixflow/bench/kservenoop/noop"
	"github.com/helixflow/helixflow/internal/daemon"
	"github.com/helixflow/helixflow/internal/netaddr"
	"github.com/helixflow/helixflow/workers/grpcapi"
)

func main() {
	if err := runMain(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "kservenoop:", err)
		}
		os.Exit(2)
	}
}

func runMain(args []string) error {
	fs := flag.NewFlagSet("kservenoop", flag.ContinueOnError)
	repo := fs.String("model-repository", "models", "model repository whose config.pbtxt files the answers come from")
	models := fs.String("model", "", "comma-separated models to serve (required)")
	addr := fs.String("address", "127.0.0.1:8101", "host:port to serve gRPC on, plaintext: a loopback host only")
	maxBytes := fs.Int64("max-request-bytes", 64<<20, "largest gRPC message accepted or sent, as helix-worker's flag of the same name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var names []string
	for n := range strings.SplitSeq(*models, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return errors.New("--model: name at least one model")
	}
	if !netaddr.Loopback(*addr) {
		return fmt.Errorf("--address %q: plaintext is served on a loopback host only (127.0.0.1, ::1, localhost)", *addr)
	}
	srv, err := noop.Load(*repo, names, *maxBytes)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// helix-worker's options, so that both servers run the same gRPC.
	gs := grpc.NewServer(grpcapi.ServerOptions(int(*maxBytes))...)
	srv.Register(gs)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var g run.Group
	g.Add(run.ContextHandler(ctx))
	g.Add(daemon.GRPC(gs, lis, 2*time.Second, log))
	return daemon.Run(&g)
}
