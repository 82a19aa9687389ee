package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/helixflow/helixflow/xds/server"
)

// runStatus prints helix-xds's view of the gateway: the config versions it
// serves, the Envoys connected and what each acknowledged, rejected
// configs (NACKs) with Envoy's error, and each model's traffic policy.
func runStatus(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	url := fs.String("xds-status-url", envOr("HELIX_XDS_STATUS_URL", "http://127.0.0.1:18001"), "helix-xds status address (its --status-listen; env HELIX_XDS_STATUS_URL)")
	output := fs.String("output", "table", "table or json")
	if _, err := parse(fs, args, 0, "status takes no argument"); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("%w: --output %q: want table or json", errUsage, *output)
	}
	st, err := fetchStatus(ctx, strings.TrimRight(*url, "/")+"/status")
	if err != nil {
		return err
	}
	af := adminFlags{output: *output}
	return af.print(out, st, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "CACHE\tVERSION\tGENERATION\tRESOURCES\tPUBLISHED")
		for _, name := range slices.Sorted(maps.Keys(st.Versions)) {
			v := st.Versions[name]
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", name, v.Version, v.Generation, v.Resources, v.PublishedAt.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(tw, "\nENVOY NODE\tCLUSTER\tPEER\tCONNECTED\tACKED")
		for _, n := range st.Nodes {
			var acked []string
			for _, typ := range slices.Sorted(maps.Keys(n.Acked)) {
				acked = append(acked, typ+"="+n.Acked[typ])
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.ID, n.Cluster, n.Peer, n.ConnectedAt.UTC().Format(time.RFC3339), strings.Join(acked, " "))
		}
		fmt.Fprintf(tw, "\nrejected configs (NACKs) since start: %d\n", st.NACKs)
		if l := st.LastNACK; l != nil {
			fmt.Fprintf(tw, "last: %s rejected %s version %s at %s: %s\n", l.Node, l.Type, l.Version, l.At.UTC().Format(time.RFC3339), l.Message)
		}
		trafficRows(tw, st.Traffic)
	})
}

// trafficRows prints each model's traffic policy: where it comes from,
// whether Envoy applies it (and why not), and its variants.
func trafficRows(tw *tabwriter.Writer, policies []server.TrafficPolicy) {
	if len(policies) == 0 {
		fmt.Fprintln(tw, "\ntraffic policies: none")
		return
	}
	fmt.Fprintln(tw, "\nTRAFFIC MODEL\tSOURCE\tSTATE\tSTICKY\tVARIANTS\tSHADOW")
	for _, p := range policies {
		state := "active"
		if !p.Active {
			state = "inactive (" + p.InactiveReason + "): " + p.Detail
		}
		variants := make([]string, len(p.Variants))
		for i, v := range p.Variants {
			variants[i] = fmt.Sprintf("%s %d%% %s", v.Name, v.Weight, selection(v.Version, v.Pool))
		}
		shadow := "-"
		if s := p.Shadow; s != nil {
			shadow = fmt.Sprintf("%s %g%% %s", s.Name, s.Percent, selection(s.Version, s.Pool))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", p.Model, p.Source, state, p.Sticky, strings.Join(variants, ", "), shadow)
	}
}

// selection says which workers a variant takes: "(version 2, pool canary)".
func selection(version, pool string) string {
	var parts []string
	if version != "" {
		parts = append(parts, "version "+version)
	}
	if pool != "" {
		parts = append(parts, "pool "+pool)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func fetchStatus(ctx context.Context, url string) (*server.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: --xds-status-url: %v", errUsage, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("helix-xds status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("helix-xds status: HTTP %d", resp.StatusCode)
	}
	var st server.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("helix-xds status: bad response: %w", err)
	}
	return &st, nil
}
