// Command resilience runs HelixFlow's chaos suite and soak test against
// the real local stack (internal/stack: Postgres, Redis, two helix-authz,
// helix-xds, two helix-workers and Envoy, on loopback
// ports of their own, state in a temporary folder):
//
//	go run -tags=vtprotobuf ./tests/resilience chaos   # make chaos
//	go run -tags=vtprotobuf ./tests/resilience soak    # make soak
//	go run -tags=vtprotobuf ./tests/resilience upgrade # make upgrade
//
// A main package run by make rather than Go tests behind a build tag: both
// run for minutes and print tables as they go (go test holds a package's
// output until it ends and kills it after -timeout), and as a main package
// the code is built and vetted by every `go vet ./...`, so it cannot rot
// unseen while `go test ./...` runs none of it. It uses bin/ (make build)
// and models/ (make models). See docs/resilience.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	fs := flag.NewFlagSet("resilience", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: resilience [flags] chaos|soak|upgrade")
		fs.PrintDefaults()
	}
	var o options
	fs.StringVar(&o.root, "root", ".", "the repository (bin/, models/, deploy/local/)")
	fs.Float64Var(&o.chaosRate, "chaos-rate", 200, "chaos: requests per second of the steady load")
	fs.IntVar(&o.chaosConns, "chaos-conns", 64, "chaos: connections of the steady load")
	fs.DurationVar(&o.soakDuration, "soak-duration", envDuration("SOAK_DURATION", 10*time.Minute),
		"soak: how long the load runs at half the capacity (env SOAK_DURATION)")
	fs.IntVar(&o.soakConns, "soak-conns", 1000, "soak: connections")
	fs.DurationVar(&o.capacityFor, "capacity-for", 15*time.Second, "soak: how long the capacity is measured")
	fs.Float64Var(&o.upgradeRate, "upgrade-rate", 100, "upgrade: requests per second of the steady load")
	fs.IntVar(&o.upgradeConns, "upgrade-conns", 32, "upgrade: connections of the steady load")
	fs.StringVar(&o.previousRelease, "previous-release", "", "upgrade: the last release's tag, whose helix-authz runs against HEAD's schema (default: the release migrations/released.sum names)")
	fs.BoolVar(&o.envoyCold, "envoy-cold", false, "upgrade: restart Envoy by stop and start instead of hot restart (shows what the hot restart avoids)")
	_ = fs.Parse(os.Args[1:])
	modes := map[string]func(context.Context, *options) error{"chaos": chaos, "soak": soak, "upgrade": upgrade}
	run, ok := modes[fs.Arg(0)]
	if fs.NArg() != 1 || !ok {
		fs.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &o); err != nil {
		fmt.Fprintln(os.Stderr, "resilience:", err)
		stop()
		os.Exit(1)
	}
}

type options struct {
	root                  string
	chaosRate             float64
	chaosConns, soakConns int
	soakDuration          time.Duration
	capacityFor           time.Duration
	upgradeRate           float64
	upgradeConns          int
	previousRelease       string
	envoyHotRestart       bool // upgrade: Envoy can hot restart
	envoyCold             bool
}

// envDuration reads a duration from the environment, or def.
func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "resilience: %s=%q is not a duration (10m, 90s)\n", name, v)
			os.Exit(2)
		}
		return d
	}
	return def
}

// logf prints a timestamped progress line.
func logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func absRoot(o *options) (string, error) { return filepath.Abs(o.root) }
