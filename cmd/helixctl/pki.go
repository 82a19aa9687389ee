package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/helixflow/helixflow/internal/pki"
)

// runPKI implements `helixctl pki init`: the local stack's development CA
// and certificates (see internal/pki), kept when valid.
func runPKI(ctx context.Context, sub string, args []string, out io.Writer) error {
	if sub != "init" {
		return fmt.Errorf("%w: unknown subcommand pki %q (init)", errUsage, sub)
	}
	fs := flag.NewFlagSet("pki init", flag.ContinueOnError)
	dir := fs.String("dir", ".helix/pki", "directory of the CA and certificates (created 0700)")
	force := fs.Bool("force", false, "issue a new CA and new certificates even where valid ones exist")
	output := fs.String("output", "table", "table or json")
	var workers []string
	fs.Func("worker", "also issue worker NAME's client certificate (worker-NAME-client), its own identity spiffe://helixflow.local/worker/NAME, with which it registers with helix-xds; repeatable", func(name string) error {
		workers = append(workers, name)
		return nil
	})
	if _, err := parse(fs, args, 0, "pki init takes no argument"); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("%w: --output %q: want table or json", errUsage, *output)
	}
	specs := pki.LocalSpecs()
	for _, w := range workers {
		spec, err := pki.WorkerClient(w)
		if err != nil {
			return fmt.Errorf("%w: --worker: %w", errUsage, err)
		}
		specs = append(specs, spec)
	}
	res, err := pki.Init(ctx, pki.Options{Dir: *dir, Force: *force}, specs)
	if err != nil {
		return fmt.Errorf("pki init %s: %w", *dir, err)
	}
	type row struct {
		Name     string    `json:"name"`
		Usage    string    `json:"usage"`
		Action   string    `json:"action"`
		Reason   string    `json:"reason,omitempty"`
		CertFile string    `json:"cert_file"`
		KeyFile  string    `json:"key_file"`
		NotAfter time.Time `json:"not_after"`
	}
	rows := make([]row, 0, len(res))
	for _, r := range res {
		usage := "ca"
		if r.Name != pki.CAName {
			usage = r.Usage.String()
		}
		rows = append(rows, row{Name: r.Name, Usage: usage, Action: string(r.Action), Reason: r.Reason,
			CertFile: r.CertFile, KeyFile: r.KeyFile, NotAfter: r.NotAfter.UTC()})
	}
	af := adminFlags{output: *output}
	return af.print(out, rows, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NAME\tUSAGE\tACTION\tNOT AFTER\tCERTIFICATE")
		for _, r := range rows {
			action := r.Action
			if r.Reason != "" && r.Reason != "forced" {
				action += " (" + r.Reason + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Usage, action, r.NotAfter.Format(time.DateOnly), r.CertFile)
		}
	})
}
