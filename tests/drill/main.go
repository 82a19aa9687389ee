// Command drill is HelixFlow's restore drill (make drill): on the real
// local stack (internal/stack, loopback, state in a temporary folder) it
// makes what must survive a disaster (OAuth clients and their tokens, API
// keys, a revoked token and a revoked key, rotated signing keys, people,
// an organization, usage rows), takes a backup the way docs/deploy.md
// tells operators of a self-managed Postgres to (pg_dump, custom format;
// the KEK stays apart), keeps writing, destroys the database (Postgres
// killed, its data folder deleted), restores the dump into a fresh
// Postgres (pg_restore), points helix-authz at it and restarts it, and
// proves what was kept and what was lost:
//
//	go run -tags=vtprotobuf ./tests/drill     # make drill
//
// It prints the measured RPO (the rows acknowledged after the backup's
// snapshot, which are gone, and the time they span) and RTO (from the
// failure to the first request that Envoy's ext_authz Check admits again
// on the restored database), and shows that the same dump restored
// without the KEK cannot sign or verify anything. A main package like
// tests/resilience: it runs for a minute or two and prints as it goes.
// It uses bin/ (make build) and models/ (make models); see
// docs/operations/restore-drill.md.
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

type options struct {
	root string
	// writeEvery is the pace of the writes that measure the RPO; after is
	// how long they go on between the backup and the failure.
	writeEvery, after time.Duration
	// history is how many rows of past usage the ledger gets before the
	// backup.
	history int
	keep    bool
}

func main() {
	fs := flag.NewFlagSet("drill", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: drill [flags]")
		fs.PrintDefaults()
	}
	var o options
	fs.StringVar(&o.root, "root", ".", "the repository (bin/, models/, deploy/local/)")
	fs.DurationVar(&o.writeEvery, "write-every", 100*time.Millisecond, "pace of the writes (new OAuth clients) that measure what the failure loses")
	fs.DurationVar(&o.after, "after", 3*time.Second, "how long the writes go on between the backup and the failure")
	fs.IntVar(&o.history, "history", 0, "rows of past usage (usage_hourly) to add before the backup, to time the dump and the restore at a deployment's size (1000000: 100 clients, 14 months)")
	fs.BoolVar(&o.keep, "keep", os.Getenv("KEEP_STATE") != "", "keep the stack's folder and the backup (env KEEP_STATE)")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() != 0 || o.writeEvery <= 0 || o.after <= 0 || o.history < 0 {
		fs.Usage()
		os.Exit(2)
	}
	root, err := filepath.Abs(o.root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "drill:", err)
		os.Exit(2)
	}
	o.root = root
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := drill(ctx, &o); err != nil {
		fmt.Fprintln(os.Stderr, "drill: FAILED:", err)
		stop()
		os.Exit(1)
	}
}

// logf prints a timestamped progress line.
func logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
