package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	amclient "github.com/prometheus/alertmanager/api/v2/client"
	"github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/alertmanager/api/v2/client/silence"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/alertmanager/pkg/labels"
)

// runAlerts lists Alertmanager's alerts or silences some, through its v2
// API.
func runAlerts(ctx context.Context, sub string, args []string, out io.Writer) error {
	switch sub {
	case "list":
		return alertsList(ctx, args, out)
	case "silence":
		return alertsSilence(ctx, args, out)
	}
	return fmt.Errorf("%w: unknown subcommand alerts %q (list, silence)", errUsage, sub)
}

// alertmanagerFlags are the flags both subcommands take.
type alertmanagerFlags struct {
	url, output string
	timeout     time.Duration
}

func (a *alertmanagerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.url, "alertmanager-url", envOr("HELIX_ALERTMANAGER_URL", "http://127.0.0.1:9093"), "Alertmanager's URL (env HELIX_ALERTMANAGER_URL)")
	fs.StringVar(&a.output, "output", "table", "table or json")
	fs.DurationVar(&a.timeout, "timeout", 10*time.Second, "how long to wait for Alertmanager")
}

func (a *alertmanagerFlags) client() (*amclient.AlertmanagerAPI, error) {
	if a.output != "table" && a.output != "json" {
		return nil, fmt.Errorf("%w: --output %q: want table or json", errUsage, a.output)
	}
	u, err := url.Parse(a.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: --alertmanager-url %q: want http(s)://host:port[/path]", errUsage, a.url)
	}
	hc := &http.Client{Timeout: a.timeout}
	tr := httptransport.NewWithClient(u.Host, path.Join("/", u.Path, amclient.DefaultBasePath), []string{u.Scheme}, hc)
	return amclient.New(tr, strfmt.Default), nil
}

// matcherFlag is a repeatable label matcher in Alertmanager's syntax:
// name="value", name=~"regex", name!="value", name!~"regex".
type matcherFlag []*labels.Matcher

func (m *matcherFlag) String() string {
	s := make([]string, len(*m))
	for i, x := range *m {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (m *matcherFlag) Set(v string) error {
	x, err := labels.ParseMatcher(v)
	if err != nil {
		return fmt.Errorf("matcher %q: %w", v, err)
	}
	*m = append(*m, x)
	return nil
}

func alertsList(ctx context.Context, args []string, out io.Writer) error {
	var (
		af       alertmanagerFlags
		matchers matcherFlag
	)
	fs := flag.NewFlagSet("alerts list", flag.ContinueOnError)
	af.register(fs)
	fs.Var(&matchers, "match", `show only alerts matching, e.g. severity="critical" (repeatable)`)
	silenced := fs.Bool("silenced", false, "also show silenced alerts")
	inhibited := fs.Bool("inhibited", false, "also show inhibited alerts")
	if _, err := parse(fs, args, 0, "alerts list takes no argument"); err != nil {
		return err
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	p := alert.NewGetAlertsParamsWithContext(ctx).
		WithSilenced(silenced).
		WithInhibited(inhibited).
		WithFilter(matcherStrings(matchers))
	resp, err := c.Alert.GetAlerts(p)
	if err != nil {
		return fmt.Errorf("alertmanager: list alerts: %w", err)
	}
	alerts := resp.Payload
	sort.SliceStable(alerts, func(i, j int) bool {
		si, sj := severityRank(alerts[i].Labels["severity"]), severityRank(alerts[j].Labels["severity"])
		if si != sj {
			return si < sj
		}
		return timeOf(alerts[i].StartsAt).Before(timeOf(alerts[j].StartsAt))
	})
	return af.print(out, alerts, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ALERT\tSEVERITY\tTEAM\tSTATE\tSINCE\tLABELS\tSUMMARY")
		for _, a := range alerts {
			state := ""
			if a.Status != nil && a.Status.State != nil {
				state = *a.Status.State
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Labels["alertname"], a.Labels["severity"], a.Labels["team"], state,
				timeOf(a.StartsAt).UTC().Format(time.RFC3339), otherLabels(a.Labels), a.Annotations["summary"])
		}
		if len(alerts) == 0 {
			fmt.Fprintln(tw, "(no alerts)")
		}
	})
}

func alertsSilence(ctx context.Context, args []string, out io.Writer) error {
	var (
		af       alertmanagerFlags
		matchers matcherFlag
	)
	fs := flag.NewFlagSet("alerts silence", flag.ContinueOnError)
	af.register(fs)
	fs.Var(&matchers, "match", `silence alerts matching, e.g. alertname="HelixWorkerDown" (repeatable, at least one)`)
	duration := fs.Duration("duration", 2*time.Hour, "how long the silence lasts")
	comment := fs.String("comment", "", "why (required)")
	author := fs.String("author", defaultAuthor(), "who silences (default: $USER, or the user running helixctl)")
	if _, err := parse(fs, args, 0, "alerts silence takes no argument (use --match)"); err != nil {
		return err
	}
	switch {
	case len(matchers) == 0:
		return fmt.Errorf("%w: alerts silence: --match is required (a silence without matchers would hide every alert)", errUsage)
	case *duration <= 0:
		return fmt.Errorf("%w: alerts silence: --duration %v must be positive", errUsage, *duration)
	case strings.TrimSpace(*comment) == "":
		return fmt.Errorf("%w: alerts silence: --comment is required", errUsage)
	case *author == "":
		return fmt.Errorf("%w: alerts silence: --author is required", errUsage)
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	start := time.Now().UTC()
	end := start.Add(*duration)
	s := &models.PostableSilence{Silence: models.Silence{
		Matchers:  apiMatchers(matchers),
		StartsAt:  (*strfmt.DateTime)(&start),
		EndsAt:    (*strfmt.DateTime)(&end),
		CreatedBy: author,
		Comment:   comment,
	}}
	resp, err := c.Silence.PostSilences(silence.NewPostSilencesParamsWithContext(ctx).WithSilence(s))
	if err != nil {
		var bad *silence.PostSilencesBadRequest
		if errors.As(err, &bad) {
			return fmt.Errorf("alertmanager refused the silence: %s", bad.Payload)
		}
		return fmt.Errorf("alertmanager: create silence: %w", err)
	}
	result := struct {
		SilenceID string    `json:"silenceID"`
		Matchers  string    `json:"matchers"`
		EndsAt    time.Time `json:"endsAt"`
	}{resp.Payload.SilenceID, matchers.String(), end}
	return af.print(out, result, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "silence %s: %s until %s\n", result.SilenceID, result.Matchers, end.Format(time.RFC3339))
	})
}

func (a *alertmanagerFlags) print(out io.Writer, v any, table func(*tabwriter.Writer)) error {
	return (&adminFlags{output: a.output}).print(out, v, table)
}

func matcherStrings(ms matcherFlag) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return out
}

func apiMatchers(ms matcherFlag) models.Matchers {
	out := make(models.Matchers, len(ms))
	for i, m := range ms {
		isRegex := m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp
		isEqual := m.Type == labels.MatchEqual || m.Type == labels.MatchRegexp
		name, value := m.Name, m.Value
		out[i] = &models.Matcher{Name: &name, Value: &value, IsRegex: &isRegex, IsEqual: &isEqual}
	}
	return out
}

// severityRank orders critical before warning before anything else.
func severityRank(s string) int {
	if i := slices.Index([]string{"critical", "warning"}, s); i >= 0 {
		return i
	}
	return 2
}

func timeOf(t *strfmt.DateTime) time.Time {
	if t == nil {
		return time.Time{}
	}
	return time.Time(*t)
}

// otherLabels are an alert's labels but those the table has columns for.
func otherLabels(ls models.LabelSet) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(ls)) {
		switch k {
		case "alertname", "severity", "team":
			continue
		}
		out = append(out, k+"="+ls[k])
	}
	return strings.Join(out, " ")
}

func defaultAuthor() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}
