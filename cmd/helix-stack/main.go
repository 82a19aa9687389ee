// Command helix-stack runs the local stack behind Envoy (make run): the
// processes internal/stack describes, on the default ports when free, with
// their state and logs in .helix/, restarted when one dies, until Ctrl-C
// or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("helix-stack", flag.ContinueOnError)
	root := fs.String("root", ".", "the repository: bin/, models/, deploy/local/gateway.yaml, alerts/, .venv")
	dir := fs.String("dir", "", "state and logs, kept across runs (default ROOT/.helix)")
	tracing := fs.Bool("tracing", true, "run Jaeger and trace every request (first run: Jaeger is built in the background and starts when built)")
	showVersion := version.AddFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: helix-stack [flags]\n\n"+
			"Runs the local stack (make run). Ports are the defaults when free, else free ones;\n"+
			"HELIX_<NAME>_PORT forces one (names: internal/stack/ports.go).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Println(version.String("helix-stack"))
		return 0
	}
	if *dir == "" {
		*dir = filepath.Join(*root, ".helix")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Everything the stack and its processes write (secrets, Postgres's
	// data, logs) is private to this user; the state folder alone is
	// opened to others (0711) where Postgres, run as postgres, must pass.
	syscall.Umask(0o077)
	if err := checkBuilt(*root); err != nil {
		fmt.Fprintln(os.Stderr, "helix-stack:", err)
		return 1
	}
	lock, err := stack.Lock(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helix-stack:", err)
		return 1
	}
	defer lock.Close()

	s, err := stack.New(stack.Options{Root: *root, Dir: *dir, DefaultPorts: true, Monitoring: true, Restart: true, Logger: log,
		Tracing: *tracing, JaegerLater: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helix-stack:", err)
		return 1
	}
	if err := s.RemoveLeftovers(); err != nil {
		fmt.Fprintln(os.Stderr, "helix-stack:", err)
		return 1
	}
	// Until Close returns, a second Ctrl-C is caught too: it must not cut
	// the stop short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	defer s.Close()
	if err := serve(ctx, s); err != nil {
		if ctx.Err() != nil {
			return 130 // interrupted while starting
		}
		fmt.Fprintln(os.Stderr, "helix-stack:", err)
		return 1
	}
	if err := s.Wait(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "helix-stack:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "helix-stack: stopping (newest first)")
	return 0
}

// serve starts the stack, makes the demo client and waits until Envoy
// serves every model, then writes .helix/local.env and prints the
// examples.
func serve(ctx context.Context, s *stack.Stack) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	demo, err := s.DemoClient(ctx)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	token, err := s.Token(tctx, demo.ID, demo.Secret)
	if err != nil {
		return fmt.Errorf("no token for the demo client (log: %s): %w", filepath.Join(s.LogDir(), stack.Authz+".log"), err)
	}
	if err := s.WaitServing(ctx, token.AccessToken); err != nil {
		return err
	}
	if err := s.WriteLocalEnv(demo); err != nil {
		return err
	}
	if s.JaegerPending() {
		// The stack serves already; traces follow once Jaeger is built
		// (a failed build leaves the stack running without it).
		go func() {
			if err := s.BuildJaeger(ctx); err != nil {
				slog.Error("jaeger", "err", err)
			}
		}()
	}
	return s.PrintWelcome(os.Stdout, demo)
}

// checkBuilt says what to run when a binary or the sample models are
// missing.
func checkBuilt(root string) error {
	for _, b := range []string{"helix-authz", "helix-xds", "helix-worker", "helixctl"} {
		if _, err := os.Stat(filepath.Join(root, "bin", b)); err != nil {
			return fmt.Errorf("bin/%s is missing (run make build)", b)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "models", "simple", "config.pbtxt")); err != nil {
		return errors.New("models/ is missing (run make models)")
	}
	return nil
}
