package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	ledger "github.com/helixflow/helixflow/extauthz/usage"
)

// runUsage prints the usage ledger's report: an organization's (--org, as
// the signed-in person, any member role) or, without --org, the calling
// client's own (--client-id or an API key).
func runUsage(ctx context.Context, args []string, out io.Writer) error {
	var (
		mf                         modelsFlags
		org, from, to, granularity string
		client, model              string
		csvOut                     bool
	)
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	mf.register(fs)
	fs.StringVar(&org, "org", "", "organization id: its clients' usage, as the signed-in person (any role); without it, the usage of the client asking (--client-id or an API key)")
	fs.StringVar(&from, "from", "", "start: RFC 3339 or YYYY-MM-DD, UTC (default: 7 days before --to)")
	fs.StringVar(&to, "to", "", "end: RFC 3339 or YYYY-MM-DD (a date: the end of that day; default: now)")
	fs.StringVar(&granularity, "granularity", "hour", "hour or day")
	fs.StringVar(&client, "client", "", "only this client id")
	fs.StringVar(&model, "model", "", "only this model")
	fs.BoolVar(&csvOut, "csv", false, "print CSV (the API's format=csv)")
	if _, err := parse(fs, args, 0, "usage takes no argument"); err != nil {
		return err
	}
	if mf.json {
		mf.output = "json"
	}
	if csvOut && mf.output == "json" {
		return fmt.Errorf("%w: --csv and --json (--output json) exclude each other", errUsage)
	}
	if org != "" && (mf.clientID != "" || mf.apiKeyFile != "") {
		return fmt.Errorf("%w: --org reads an organization's usage as the signed-in person; --client-id and --api-key-file read a client's own", errUsage)
	}
	q := url.Values{}
	for k, v := range map[string]string{"from": from, "to": to, "granularity": granularity, "client": client, "model": model} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if csvOut {
		q.Set("format", ledger.FormatCSV)
	}
	base, hc, auth, err := mf.caller(ctx)
	if err != nil {
		return err
	}
	path := "/api/v1/usage"
	if org != "" {
		path = "/api/v1/orgs/" + url.PathEscape(org) + "/usage"
	}
	body, err := apiGet(ctx, hc, base+path+"?"+q.Encode(), auth)
	if err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	if csvOut || mf.output == "json" {
		_, err := out.Write(body)
		return err
	}
	var rep ledger.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	return usageTable(out, &rep)
}

func usageTable(out io.Writer, rep *ledger.Report) error {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "# %s to %s, per %s\n", rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), rep.Granularity)
	fmt.Fprintln(tw, "START\tCLIENT\tMODEL\tREQUESTS\tINFERENCES\tERRORS\tTHROTTLED\tCOMPUTE S\tP50 MS\tP99 MS")
	for _, r := range rep.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", r.Start.Format(time.RFC3339), r.ClientID, r.Model,
			r.Requests, r.Inferences, r.Errors, r.Throttled, seconds(r.ComputeSeconds), ms(r.LatencyP50Ms), ms(r.LatencyP99Ms))
	}
	t := rep.Totals
	fmt.Fprintf(tw, "TOTAL\t\t\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", t.Requests, t.Inferences, t.Errors, t.Throttled,
		seconds(t.ComputeSeconds), ms(t.LatencyP50Ms), ms(t.LatencyP99Ms))
	return tw.Flush()
}

func seconds(s float64) string { return strconv.FormatFloat(s, 'f', 3, 64) }

func ms(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64)
}
