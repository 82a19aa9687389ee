package portal

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/helixflow/helixflow/internal/wire"
)

// UsageRow is one row of GET /api/v1/orgs/{org}/usage: one period, client
// and model (the totals carry the sums).
type UsageRow struct {
	Start          string  `json:"start"`
	Label          string  `json:"-"` // Start for people
	ClientID       string  `json:"client_id"`
	Model          string  `json:"model"`
	Requests       int64   `json:"requests"`
	Inferences     int64   `json:"inferences"`
	Errors         int64   `json:"errors"`
	Throttled      int64   `json:"throttled"`
	ComputeSeconds float64 `json:"compute_seconds"`
	// Latencies are null where nothing was measured (throttled only).
	LatencyP50ms *float64 `json:"latency_p50_ms"`
	LatencyP99ms *float64 `json:"latency_p99_ms"`
}

// P50 and P99 write the latencies in ms, "—" for none.
func (u UsageRow) P50() string { return showMs(u.LatencyP50ms) }
func (u UsageRow) P99() string { return showMs(u.LatencyP99ms) }

func showMs(v *float64) string {
	if v == nil {
		return "—"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64)
}

// UsageAnswer is GET /api/v1/orgs/{org}/usage's answer.
type UsageAnswer struct {
	Granularity string     `json:"granularity"`
	From        string     `json:"from"`
	To          string     `json:"to"`
	Rows        []UsageRow `json:"rows"`
	Totals      UsageRow   `json:"totals"`
}

// usageFilters are the usage page's query parameters, passed on to the
// API as they are (it checks them and names a bad one).
var usageFilters = []string{"from", "to", "granularity", "client", "model"}

// maxChartPeriods bounds the periods a chart draws with empty ones filled
// in; a longer range draws the periods that have use.
const maxChartPeriods = 2400

// usageData is the usage page's.
type usageData struct {
	Filters     map[string]string
	Answer      *UsageAnswer
	From, To    string // the range shown, as text
	Periods     []usagePeriod
	Charts      []Chart
	CSV         string // the API's CSV of the same query
	Granularity string
}

// usagePeriod is one period's sums over clients and models.
type usagePeriod struct {
	Label, Short string
	UsageRow
}

func (p *Portal) usageRoutes() []route {
	return []route{{pattern: "GET " + wire.PortalPrefix + "usage", signedIn: true, handler: p.usagePage}}
}

func (p *Portal) usagePage(w http.ResponseWriter, r *http.Request, v *View) {
	v.Title, v.Nav = "Usage", "usage"
	d := usageData{Filters: map[string]string{}}
	v.Data = &d
	if v.Org == nil {
		p.render(w, http.StatusOK, "usage", v)
		return
	}
	q := url.Values{}
	for _, f := range usageFilters {
		if val := r.URL.Query().Get(f); val != "" {
			d.Filters[f] = val
			q.Set(f, val)
		}
	}
	path := "/api/v1/orgs/" + url.PathEscape(v.Org.ID) + "/usage"
	var ans UsageAnswer
	err := p.api(nil, r, v, http.MethodGet, path+"?"+q.Encode(), nil, &ans)
	if e, ok := asAPIError(err); ok && e.Status == http.StatusBadRequest {
		// A bad filter: the form again, with the API's word on it.
		v.Error = "The filters were not accepted: " + e.Description
		p.render(w, http.StatusBadRequest, "usage", v)
		return
	}
	if err != nil {
		p.apiFailure(w, r, v, err)
		return
	}
	q.Set("format", "csv")
	d.CSV = path + "?" + q.Encode()
	d.Answer, d.Granularity = &ans, ans.Granularity
	d.From, d.To = showTime(ans.From, "hour"), showTime(ans.To, "hour")
	for i := range ans.Rows {
		ans.Rows[i].Label = showTime(ans.Rows[i].Start, ans.Granularity)
	}
	d.Periods = periods(&ans)
	req, comp, bad := make([]Point, len(d.Periods)), make([]Point, len(d.Periods)), make([]Point, len(d.Periods))
	for i, pd := range d.Periods {
		req[i] = Point{Label: pd.Label, Short: pd.Short, Value: float64(pd.Requests), Text: strconv.FormatInt(pd.Requests, 10)}
		comp[i] = Point{Label: pd.Label, Short: pd.Short, Value: pd.ComputeSeconds}
		bad[i] = Point{Label: pd.Label, Short: pd.Short, Value: float64(pd.Errors + pd.Throttled), Text: strconv.FormatInt(pd.Errors+pd.Throttled, 10)}
	}
	per := "per " + ans.Granularity
	d.Charts = []Chart{
		BarChart("chart-requests", "Requests "+per, "requests", req),
		BarChart("chart-compute", "Compute seconds "+per, "s", comp),
		BarChart("chart-refused", "Errors and throttled requests "+per, "requests", bad),
	}
	p.render(w, http.StatusOK, "usage", v)
}

// periods sums the answer's rows per period, oldest first, with the
// periods without use between from and to filled in (when not too many).
func periods(ans *UsageAnswer) []usagePeriod {
	step := time.Hour
	if ans.Granularity == "day" {
		step = 24 * time.Hour
	}
	sums := map[string]*usagePeriod{}
	var order []string
	add := func(key string) *usagePeriod {
		pd, ok := sums[key]
		if !ok {
			pd = &usagePeriod{Label: showTime(key, ans.Granularity), Short: shortTime(key, ans.Granularity), UsageRow: UsageRow{Start: key}}
			sums[key] = pd
			order = append(order, key)
		}
		return pd
	}
	from, ferr := time.Parse(time.RFC3339, ans.From)
	to, terr := time.Parse(time.RFC3339, ans.To)
	if ferr == nil && terr == nil && to.After(from) && to.Sub(from)/step <= maxChartPeriods {
		for t := from.UTC().Truncate(step); t.Before(to); t = t.Add(step) {
			add(t.Format(time.RFC3339))
		}
	}
	for _, row := range ans.Rows {
		key := row.Start
		if t, err := time.Parse(time.RFC3339, row.Start); err == nil {
			key = t.UTC().Format(time.RFC3339) // one spelling per instant
		}
		pd := add(key)
		pd.Requests += row.Requests
		pd.Inferences += row.Inferences
		pd.Errors += row.Errors
		pd.Throttled += row.Throttled
		pd.ComputeSeconds += row.ComputeSeconds
	}
	sort.SliceStable(order, func(i, j int) bool { return startBefore(order[i], order[j]) })
	out := make([]usagePeriod, 0, len(order))
	for _, k := range order {
		out = append(out, *sums[k])
	}
	return out
}

func startBefore(a, b string) bool {
	ta, ea := time.Parse(time.RFC3339, a)
	tb, eb := time.Parse(time.RFC3339, b)
	if ea != nil || eb != nil {
		return a < b
	}
	return ta.Before(tb)
}

// showTime writes an RFC 3339 time in UTC for people: the day for days,
// the day and hour otherwise; anything else as it came.
func showTime(s, granularity string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	if granularity == "day" {
		return t.UTC().Format("2006-01-02")
	}
	return t.UTC().Format("2006-01-02 15:04") + " UTC"
}

// shortTime is showTime for under a chart's axis: "Jan 2" for days,
// "Jan 2 15h" for hours.
func shortTime(s, granularity string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	if granularity == "day" {
		return t.UTC().Format("Jan 2")
	}
	return t.UTC().Format("Jan 2 15h")
}
