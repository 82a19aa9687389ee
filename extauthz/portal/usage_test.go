package portal

import (
	"context"
	"math"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/wire"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

func TestUsagePage(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	uid, org := e.user("dev@example.test", false, "Acme")
	otherUID, otherOrg := e.user("other@example.test", false, "Rival")
	hour := time.Now().UTC().Truncate(time.Hour)
	orgOf := map[string]string{"acme-app": org, "rival-app": otherOrg}
	rows := []*usagev1.UsageRow{
		{HourUnix: hour.Add(-2 * time.Hour).Unix(), ClientId: "acme-app", Model: "simple", Requests: 40, Inferences: 80, Errors: 1, ComputeNs: 1_500_000_000},
		{HourUnix: hour.Add(-26 * time.Hour).Unix(), ClientId: "acme-app", Model: "simple", Requests: 10, Inferences: 10, Throttled: 3},
		{HourUnix: hour.Add(-2 * time.Hour).Unix(), ClientId: "rival-app", Model: "secret-model", Requests: 999},
	}
	if _, err := e.usage.Apply(context.Background(), &usagev1.RecordRequest{Reporter: "worker/w1/boot", Seq: 1, Rows: rows},
		func(c string) string { return orgOf[c] }); err != nil {
		t.Fatal(err)
	}
	b := e.browser(uid)

	p := b.get("/portal/usage")
	p.expect(t, http.StatusOK, `role="img"`, `<title id="chart-requests-title">Requests per hour</title>`,
		"Compute seconds per hour", "Errors and throttled requests per hour",
		`<dt>Requests</dt><dd>50</dd>`, `<dt>Throttled</dt><dd>3</dd>`, `<dt>Compute</dt><dd>1.500 s</dd>`,
		"<code>acme-app</code>", "Per client and model", `href="/api/v1/orgs/`+org+`/usage?format=csv"`)
	// ">999<" rather than "999": random tokens (CSRF, nonces, ids) may hold the digits.
	p.lacks(t, "rival-app", "secret-model", ">999<")
	noInlineCode(t, p.body)
	// Every hour of the default range is a bar (empty ones too) and a row
	// of the table beside the chart.
	bars := strings.Count(p.body, `<rect class="bar"`) / 3
	if bars < 7*24 || bars > 7*24+2 {
		t.Errorf("%d bars per chart, want one per hour of 7 days", bars)
	}
	if !strings.Contains(p.body, hour.Add(-2*time.Hour).Format("2006-01-02 15:04")+" UTC</th><td>40</td><td>80</td><td>1</td><td>0</td><td>1.500</td>") {
		t.Error("the per-hour table lacks the row of two hours ago")
	}

	day := b.get("/portal/usage?granularity=day&model=simple&org=" + org)
	day.expect(t, http.StatusOK, "Requests per day", `<option value="day" selected>`, `value="simple"`,
		`/usage?format=csv&amp;granularity=day&amp;model=simple`)

	bad := b.get("/portal/usage?granularity=week")
	bad.expect(t, http.StatusBadRequest, "The filters were not accepted", "granularity", `name="granularity"`)

	hostile := b.get("/portal/usage?client=" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E")
	hostile.lacks(t, "<script>alert(1)")

	// Someone else's organization is not theirs to pick: the page shows
	// their own (the first), never the other's rows.
	b.get("/portal/usage?org="+otherOrg).lacks(t, "rival-app", ">999<")
	e.browser(otherUID).get("/portal/usage").expect(t, http.StatusOK, "rival-app", "<dd>999</dd>")

	// The CSV link is the JSON API's, readable with the browser's session.
	csv := b.get("/api/v1/orgs/" + org + "/usage?format=csv")
	csv.expect(t, http.StatusOK, "acme-app")

	// No organization: nothing to show, no error.
	loner, _ := e.user("loner@example.test", false, "")
	e.browser(loner).get("/portal/usage").expect(t, http.StatusOK, "You belong to no organization yet")
	_ = wire.PortalPrefix
}

func TestPeriods(t *testing.T) {
	p50 := 1.5
	ans := &UsageAnswer{Granularity: "hour", From: "2026-01-01T00:00:00Z", To: "2026-01-01T04:00:00Z", Rows: []UsageRow{
		{Start: "2026-01-01T02:00:00Z", ClientID: "a", Requests: 2, ComputeSeconds: 0.5, LatencyP50ms: &p50},
		{Start: "2026-01-01T02:00:00+00:00", ClientID: "b", Requests: 3, Errors: 1},
		{Start: "2026-01-01T00:00:00Z", ClientID: "a", Requests: 1, Throttled: 4},
	}}
	got := periods(ans)
	want := []struct {
		label    string
		requests int64
	}{{"2026-01-01 00:00 UTC", 1}, {"2026-01-01 01:00 UTC", 0}, {"2026-01-01 02:00 UTC", 5}, {"2026-01-01 03:00 UTC", 0}}
	if len(got) != len(want) {
		t.Fatalf("%d periods, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Label != w.label || got[i].Requests != w.requests {
			t.Errorf("period %d: %s %d, want %s %d", i, got[i].Label, got[i].Requests, w.label, w.requests)
		}
	}
	if got[2].Errors != 1 || got[2].ComputeSeconds != 0.5 || got[0].Throttled != 4 {
		t.Errorf("sums: %+v", got)
	}
	// A range too long to fill draws only the periods with use.
	ans.To = "2030-01-01T00:00:00Z"
	if n := len(periods(ans)); n != 2 {
		t.Errorf("%d periods over a long range, want 2", n)
	}
	if (UsageRow{}).P99() != "—" || (UsageRow{LatencyP50ms: &p50}).P50() != "1.5" {
		t.Error("latency text")
	}
}

func TestBarChart(t *testing.T) {
	c := BarChart("c", "Requests per hour", "requests", []Point{{Label: "a", Value: 3}, {Label: "b", Value: 0}, {Label: "c", Value: 7}})
	if len(c.Bars) != 3 || len(c.YTicks) < 2 {
		t.Fatalf("%d bars, %d ticks", len(c.Bars), len(c.YTicks))
	}
	for _, b := range c.Bars {
		if b.X < c.X0 || b.X+b.W > c.X1+0.01 || b.Y < c.Y1-0.01 || b.Y+b.H > c.Y0+0.01 || b.H < 0 {
			t.Errorf("bar %+v outside the plot %v..%v x %v..%v", b, c.X0, c.X1, c.Y1, c.Y0)
		}
	}
	// Heights are proportional to the values; the top tick is at least
	// the highest value.
	if h0, h2 := c.Bars[0].H, c.Bars[2].H; math.Abs(h0/h2-3.0/7) > 0.01 || c.Bars[1].H != 0 {
		t.Errorf("heights %v %v %v", h0, c.Bars[1].H, h2)
	}
	if top := c.YTicks[len(c.YTicks)-1].Label; top != "8" {
		t.Errorf("top tick %s, want 8", top)
	}
	if c.Bars[2].Title != "c: 7 requests" || !strings.Contains(c.Summary, "3 periods, total 10 requests, highest 7 requests") {
		t.Errorf("title %q, summary %q", c.Bars[2].Title, c.Summary)
	}
	empty := BarChart("e", "Nothing", "s", nil)
	if len(empty.Bars) != 0 || len(empty.YTicks) == 0 {
		t.Errorf("empty chart: %+v", empty)
	}
	many := make([]Point, 500)
	if n := len(BarChart("m", "Many", "s", many).XLabels); n > maxXLabels {
		t.Errorf("%d period labels, at most %d", n, maxXLabels)
	}
}

func TestNiceScale(t *testing.T) {
	for _, tc := range []struct{ max, step, top float64 }{
		{0, 1, 1}, {-3, 1, 1}, {math.NaN(), 1, 1}, {math.Inf(1), 1, 1},
		{1, 0.5, 1}, {7, 2, 8}, {10, 5, 10}, {99, 50, 100}, {1234, 500, 1500}, {0.003, 0.001, 0.003},
	} {
		step, top := niceScale(tc.max)
		if math.Abs(step-tc.step) > 1e-12 || math.Abs(top-tc.top) > 1e-9 {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tc.max, step, top, tc.step, tc.top)
		}
	}
}

func TestFormatNumber(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{0, "0"}, {7, "7"}, {1.5, "1.5"}, {0.1234, "0.123"}, {12.34, "12.3"}, {12000, "12k"}, {1_500_000, "1.5M"}, {25_000_000, "25M"},
		{0.00025, "0.00025"}, {0.00075000000000001, "0.00075"}, {0.0000123, "0.000012"}} {
		if got := formatNumber(tc.v); got != tc.want {
			t.Errorf("formatNumber(%v) = %s, want %s", tc.v, got, tc.want)
		}
	}
}

var _ = regexp.MustCompile
