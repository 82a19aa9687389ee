package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/rollouts"
	"github.com/helixflow/helixflow/internal/rolloutspec"
)

// rolloutUsage names the rollout subcommands and their arguments.
const rolloutUsage = `rollout start MODEL --to VERSION [--to-pool P] [--from V] [--from-pool P] [--steps 1,5,25,50,100] [--interval 5m] --slo 'error_ratio<0.01,p99_ms<200' [--no-sticky]
  rollout status [MODEL]
  rollout pause|resume|abort ID
  rollout release MODEL`

// runRollout asks helix-authz's admin API for rollouts, which helix-xds
// runs (docs/rollouts.md).
func runRollout(ctx context.Context, sub string, args []string, out io.Writer) error {
	nargs, what := 1, "rollout "+sub+" takes a model name"
	switch sub {
	case "start", "release":
	case "status":
		nargs, what = -1, "rollout status takes at most a model name"
	case "pause", "resume", "abort":
		what = "rollout " + sub + " takes a rollout id (helixctl rollout status shows them)"
	default:
		return fmt.Errorf("%w: unknown subcommand rollout %q; usage: %s", errUsage, sub, rolloutUsage)
	}
	var af adminFlags
	fs := flag.NewFlagSet("rollout "+sub, flag.ContinueOnError)
	af.register(fs)
	var (
		req              rollouts.Request
		steps, slo       string
		interval         time.Duration
		noSticky         bool
		limit            int
		toFlag, fromFlag string
	)
	switch sub {
	case "start":
		fs.StringVar(&toFlag, "to", "", "the canary's version (the new one); --to or --to-pool is required")
		fs.StringVar(&req.ToPool, "to-pool", "", "the canary's worker pool (helix-worker --pool)")
		fs.StringVar(&fromFlag, "from", "", "the stable variant's version (default: the highest served version below --to)")
		fs.StringVar(&req.FromPool, "from-pool", "", "the stable variant's worker pool (default: any; \"default\" for a rollout by --to-pool alone)")
		fs.StringVar(&steps, "steps", "1,5,25,50,100", "the canary's percentages, increasing, the last 100")
		fs.DurationVar(&interval, "interval", 5*time.Minute, "how long each step runs before its SLOs are evaluated (1s to 24h)")
		fs.StringVar(&slo, "slo", "", "what the canary must hold at each evaluation (required): 'error_ratio<0.01,p99_ms<200', either or both")
		fs.BoolVar(&noSticky, "no-sticky", false, "split per request rather than per client (default: each client sees one variant)")
	case "status":
		fs.IntVar(&limit, "limit", 20, fmt.Sprintf("at most this many rollouts, newest first (1 to %d)", rollouts.MaxList))
	}
	pos, err := parse(fs, args, nargs, what)
	if err != nil {
		return err
	}
	var id int64
	switch sub {
	case "start":
		if req, err = startRequest(pos[0], toFlag, fromFlag, steps, slo, interval, noSticky, req); err != nil {
			return err
		}
	case "pause", "resume", "abort":
		if id, err = strconv.ParseInt(pos[0], 10, 64); err != nil || id < 1 {
			return fmt.Errorf("%w: rollout %s: %q is not a rollout id (a positive whole number; helixctl rollout status shows them)", errUsage, sub, pos[0])
		}
	case "status":
		if limit < 1 || limit > rollouts.MaxList {
			return fmt.Errorf("%w: --limit %d: want 1 to %d", errUsage, limit, rollouts.MaxList)
		}
	}
	c, err := af.client(ctx)
	if err != nil {
		return err
	}
	var one *admin.RolloutView
	switch sub {
	case "start":
		one, err = c.StartRollout(ctx, req)
	case "pause", "resume", "abort":
		one, err = c.RolloutAction(ctx, id, sub)
	case "release":
		one, err = c.ReleaseRollout(ctx, pos[0])
	case "status":
		model := ""
		if len(pos) == 1 {
			model = pos[0]
		}
		list, err := c.ListRollouts(ctx, model, limit)
		if err != nil {
			return err
		}
		return af.print(out, list, func(tw *tabwriter.Writer) { rolloutRows(tw, list...) })
	}
	if err != nil {
		return err
	}
	return af.print(out, one, func(tw *tabwriter.Writer) {
		rolloutRows(tw, *one)
		switch sub {
		case "start":
			fmt.Fprintf(tw, "\nhelix-xds applies the first step (%d%%) within a second; follow it with: helixctl rollout status %s\n", one.Steps[0], one.Model)
		case "abort":
			fmt.Fprintf(tw, "\nthe canary gets no traffic; helixctl rollout release %s ends the pin\n", one.Model)
		}
	})
}

// startRequest checks the start flags before anything is sent, naming the
// flag that is wrong.
func startRequest(model, to, from, steps, slo string, interval time.Duration, noSticky bool, req rollouts.Request) (rollouts.Request, error) {
	req.Model, req.ToVersion, req.FromVersion = model, to, from
	if to == "" && req.ToPool == "" {
		return req, fmt.Errorf("%w: rollout start: --to VERSION or --to-pool POOL is required (the canary)", errUsage)
	}
	var err error
	if req.Steps, err = rolloutspec.ParseSteps(steps); err != nil {
		return req, fmt.Errorf("%w: --steps %q: %v", errUsage, steps, err)
	}
	if err := rolloutspec.CheckInterval(interval); err != nil {
		return req, fmt.Errorf("%w: --%v", errUsage, err)
	}
	req.Interval = interval.String()
	if slo == "" {
		return req, fmt.Errorf("%w: rollout start: --slo is required, e.g. --slo 'error_ratio<0.01,p99_ms<200'", errUsage)
	}
	s, err := rolloutspec.ParseSLO(slo)
	if err != nil {
		return req, fmt.Errorf("%w: --slo %q: %v", errUsage, slo, err)
	}
	req.SLO = &s
	sticky := !noSticky
	req.Sticky = &sticky
	return req, nil
}

func rolloutRows(tw *tabwriter.Writer, rs ...admin.RolloutView) {
	fmt.Fprintln(tw, "ID\tMODEL\tSTATE\tSTEP\tCANARY\tFROM\tTO\tSLO\tINTERVAL\tUPDATED\tREASON")
	for _, r := range rs {
		step := "-"
		if r.Step >= 0 {
			step = fmt.Sprintf("%d/%d", r.Step+1, len(r.Steps))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d%%\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Model, r.State, step, r.Weight,
			variant(r.FromVersion, r.FromPool), variant(r.ToVersion, r.ToPool), r.SLO.String(), r.Interval,
			r.UpdatedAt.UTC().Format(time.RFC3339), orDash(r.Reason))
	}
}

// variant writes a rollout's side: "v2", "@canary", "v2@canary", or "any".
func variant(version, pool string) string {
	var parts []string
	if version != "" {
		parts = append(parts, "v"+version)
	}
	if pool != "" {
		parts = append(parts, "@"+pool)
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, "")
}
