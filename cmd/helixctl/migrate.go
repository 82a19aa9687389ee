package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/helixflow/helixflow/internal/secretfile"
	"github.com/helixflow/helixflow/migrations"
)

func runMigrate(ctx context.Context, sub string, args []string, out io.Writer) error {
	switch sub {
	case "up", "down", "status":
	default:
		return fmt.Errorf("%w: unknown subcommand migrate %q (up, down, status)", errUsage, sub)
	}
	fs := flag.NewFlagSet("migrate "+sub, flag.ContinueOnError)
	dsn := fs.String("database-url", "", "Postgres URL without a password (default: env HELIX_DATABASE_URL, which may hold one)")
	output := fs.String("output", "table", "table or json")
	if _, err := parse(fs, args, 0, "migrate "+sub+" takes no argument"); err != nil {
		return err
	}
	if secretfile.URLHoldsPassword(*dsn) {
		return fmt.Errorf("%w: --database-url holds a password, which the command line shows to every user of the machine; put the URL in HELIX_DATABASE_URL", errUsage)
	}
	if *dsn == "" {
		*dsn = os.Getenv("HELIX_DATABASE_URL")
	}
	if *dsn == "" {
		return fmt.Errorf("%w: HELIX_DATABASE_URL or --database-url is required", errUsage)
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("%w: --output %q: want table or json", errUsage, *output)
	}
	af := adminFlags{output: *output}
	db, err := migrations.OpenDB(*dsn)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	switch sub {
	case "up":
		if err := migrations.Up(ctx, db); err != nil {
			return err
		}
	case "down":
		if err := migrations.Down(ctx, db); err != nil {
			return err
		}
	case "status":
	default:
		return fmt.Errorf("%w: unknown subcommand migrate %q (up, down, status)", errUsage, sub)
	}
	st, err := migrations.Status(ctx, db)
	if err != nil {
		return err
	}
	// JSON in the admin API's spelling (snake_case), not Go's field names.
	type row struct {
		Version   int64      `json:"version"`
		Name      string     `json:"name"`
		Applied   bool       `json:"applied"`
		AppliedAt *time.Time `json:"applied_at,omitempty"`
	}
	rows := make([]row, 0, len(st))
	for _, s := range st {
		r := row{Version: s.Version, Name: s.Name, Applied: s.Applied}
		if s.Applied {
			at := s.AppliedAt.UTC()
			r.AppliedAt = &at
		}
		rows = append(rows, r)
	}
	return af.print(out, rows, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED")
		for _, s := range st {
			applied := "pending"
			if s.Applied {
				applied = s.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\n", s.Version, s.Name, applied)
		}
	})
}
