package usage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/helixflow/helixflow/extauthz/session"
	counts "github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
)

// Granularities of a report's rows.
const (
	Hour = "hour"
	Day  = "day"
)

// Formats of a report.
const (
	FormatJSON = "json"
	FormatCSV  = "csv"
)

// Bounds of a query: its range (a quarter and a bit), its default range,
// and the rows one answer holds.
const (
	MaxRange     = 93 * 24 * time.Hour
	DefaultRange = 7 * 24 * time.Hour
	MaxRowsOut   = 50_000
)

// ErrBadQuery: a query parameter is wrong; the error names it.
var ErrBadQuery = errors.New("bad query")

// Query is what a report covers: hours in [From, To) (whole hours, UTC),
// grouped by Granularity, client and model, optionally of one client or
// model. OrgID or ClientID narrows it to an organization's or a client's
// rows (set by the caller's rights, never by the query string, except the
// admin API's org parameter).
type Query struct {
	From, To    time.Time
	Granularity string
	Client      string
	Model       string
	Format      string
	// Org: the admin API's org parameter ("" for every organization).
	Org string
}

// Parameters of the query string.
var queryParams = []string{"from", "to", "granularity", "client", "model", "format"}

// ParseQuery reads a report's query string: from and to (RFC 3339 or
// YYYY-MM-DD, UTC; a date as to means the end of that day; default: the
// last DefaultRange up to the end of the current hour, or day with
// granularity=day), granularity (hour or day; default hour), client,
// model, format (json or csv; default json). withOrg also accepts org (the
// admin API's). from is rounded down and to up to whole hours; to must be
// after from and at most MaxRange later. Unknown and repeated parameters
// are refused. Errors wrap ErrBadQuery and name the parameter.
func ParseQuery(v url.Values, now time.Time, withOrg bool) (Query, error) {
	allowed := queryParams
	if withOrg {
		allowed = append(slices.Clone(queryParams), "org")
	}
	for k, vs := range v {
		if !slices.Contains(allowed, k) {
			return Query{}, fmt.Errorf("%w: unknown parameter %q (known: %s)", ErrBadQuery, clip(k), strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return Query{}, fmt.Errorf("%w: parameter %s given %d times", ErrBadQuery, k, len(vs))
		}
	}
	q := Query{Granularity: v.Get("granularity"), Client: v.Get("client"), Model: v.Get("model"), Format: v.Get("format"), Org: v.Get("org")}
	switch q.Granularity {
	case "":
		q.Granularity = Hour
	case Hour, Day:
	default:
		return Query{}, fmt.Errorf("%w: granularity %q: want hour or day", ErrBadQuery, clip(q.Granularity))
	}
	switch q.Format {
	case "":
		q.Format = FormatJSON
	case FormatJSON, FormatCSV:
	default:
		return Query{}, fmt.Errorf("%w: format %q: want json or csv", ErrBadQuery, clip(q.Format))
	}
	if q.Client != "" {
		if err := counts.CheckClientID(q.Client); err != nil {
			return Query{}, fmt.Errorf("%w: client: %w", ErrBadQuery, err)
		}
	}
	if q.Model != "" {
		if err := wire.CheckModelName(q.Model); err != nil {
			return Query{}, fmt.Errorf("%w: model: %w", ErrBadQuery, err)
		}
	}
	if q.Org != "" && !session.IsUUID(q.Org) {
		return Query{}, fmt.Errorf("%w: org %q: want an organization id (a UUID)", ErrBadQuery, clip(q.Org))
	}
	var err error
	if q.From, err = parseTime("from", v.Get("from"), false); err != nil {
		return Query{}, err
	}
	if q.To, err = parseTime("to", v.Get("to"), true); err != nil {
		return Query{}, err
	}
	unit := time.Hour
	if q.Granularity == Day {
		unit = 24 * time.Hour
	}
	if q.To.IsZero() {
		q.To = ceil(now.UTC(), unit)
	}
	if q.From.IsZero() {
		q.From = q.To.Add(-DefaultRange).Truncate(unit)
	}
	q.From, q.To = q.From.Truncate(time.Hour), ceil(q.To, time.Hour)
	if !q.To.After(q.From) {
		return Query{}, fmt.Errorf("%w: to (%s) must be after from (%s)", ErrBadQuery, q.To.Format(time.RFC3339), q.From.Format(time.RFC3339))
	}
	if q.To.Sub(q.From) > MaxRange {
		return Query{}, fmt.Errorf("%w: from %s to %s is over %d days; ask for at most %d days at a time", ErrBadQuery,
			q.From.Format(time.RFC3339), q.To.Format(time.RFC3339), int(q.To.Sub(q.From).Hours()/24), int(MaxRange.Hours()/24))
	}
	return q, nil
}

// Years a query may name: the ledger holds nothing outside them, and
// they keep times far from time.Time's and Postgres' ends.
const minYear, maxYear = 2000, 9999

func parseTime(name, s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	var t time.Time
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		t = d
		if end {
			t = t.AddDate(0, 0, 1)
		}
	} else if t, err = time.Parse(time.RFC3339, s); err != nil {
		return time.Time{}, fmt.Errorf("%w: %s %q: want RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02)", ErrBadQuery, name, clip(s))
	}
	t = t.UTC()
	if t.Year() < minYear || t.Year() >= maxYear {
		return time.Time{}, fmt.Errorf("%w: %s %q: want a time between the years %d and %d", ErrBadQuery, name, clip(s), minYear, maxYear)
	}
	return t, nil
}

// ceil rounds t up to a multiple of d (UTC).
func ceil(t time.Time, d time.Duration) time.Time {
	f := t.Truncate(d)
	if f.Equal(t) {
		return f
	}
	return f.Add(d)
}

// clip keeps echoed parameter values short.
func clip(s string) string {
	if len(s) > 64 {
		return strings.ToValidUTF8(s[:64], "") + "..."
	}
	return s
}

// Row is one line of a report: one client's use of one model in one hour
// or day. The latency quantiles are null when no request was timed.
type Row struct {
	Start          time.Time `json:"start"`
	ClientID       string    `json:"client_id"`
	Model          string    `json:"model"`
	Requests       int64     `json:"requests"`
	Inferences     int64     `json:"inferences"`
	Errors         int64     `json:"errors"`
	Throttled      int64     `json:"throttled"`
	ComputeSeconds float64   `json:"compute_seconds"`
	LatencyP50Ms   *float64  `json:"latency_p50_ms"`
	LatencyP99Ms   *float64  `json:"latency_p99_ms"`

	buckets []uint64
}

// Totals sums a report's rows (the quantiles over all its timed requests).
type Totals struct {
	Requests       int64    `json:"requests"`
	Inferences     int64    `json:"inferences"`
	Errors         int64    `json:"errors"`
	Throttled      int64    `json:"throttled"`
	ComputeSeconds float64  `json:"compute_seconds"`
	LatencyP50Ms   *float64 `json:"latency_p50_ms"`
	LatencyP99Ms   *float64 `json:"latency_p99_ms"`
}

// Report is a query's answer.
type Report struct {
	Granularity string    `json:"granularity"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Rows        []Row     `json:"rows"`
	Totals      Totals    `json:"totals"`
}

// Scope is whose rows a query may read: an organization's, a client's, or
// (both empty, Everything set) all of them.
type Scope struct {
	OrgID      string
	ClientID   string
	Everything bool
}

// ErrTooManyRows: the answer would be over MaxRowsOut rows.
var ErrTooManyRows = fmt.Errorf("%w: the answer would have over %d rows: narrow from and to, use granularity=day, or filter by client or model", ErrBadQuery, MaxRowsOut)

// Report answers q within scope.
func (s *Store) Report(ctx context.Context, q Query, scope Scope) (*Report, error) {
	if scope.OrgID == "" && scope.ClientID == "" && !scope.Everything {
		return nil, errors.New("usage: a report needs a scope")
	}
	var (
		where = []string{"hour >= $1", "hour < $2"}
		args  = []any{q.From, q.To}
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if scope.OrgID != "" {
		add("org_id = $%d::uuid", scope.OrgID)
	}
	if scope.ClientID != "" {
		add("client_id = $%d", scope.ClientID)
	}
	if q.Org != "" {
		add("org_id = $%d::uuid", q.Org)
	}
	if q.Client != "" {
		add("client_id = $%d", q.Client)
	}
	if q.Model != "" {
		add("model = $%d", q.Model)
	}
	unit := "hour"
	if q.Granularity == Day {
		unit = "day"
	}
	// Bucket sums column by column: a row's latency_buckets is empty or
	// NumBuckets long, and a subscript past its end is NULL, which sum
	// skips.
	var sums strings.Builder
	for i := 1; i <= counts.NumBuckets; i++ {
		fmt.Fprintf(&sums, ", COALESCE(sum(latency_buckets[%d]), 0)::bigint", i)
	}
	sql := fmt.Sprintf(`SELECT date_trunc('%s', hour, 'UTC') AS start, client_id, model,
	sum(requests)::bigint, sum(inferences)::bigint, sum(errors)::bigint, sum(throttled)::bigint, sum(compute_ns)::bigint%s
FROM usage_hourly WHERE %s
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 LIMIT %d`, unit, sums.String(), strings.Join(where, " AND "), MaxRowsOut+1)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	rep := &Report{Granularity: q.Granularity, From: q.From, To: q.To, Rows: []Row{}}
	total := make([]uint64, counts.NumBuckets)
	var computeNS int64
	for rows.Next() {
		if len(rep.Rows) == MaxRowsOut {
			return nil, ErrTooManyRows
		}
		var (
			r  Row
			ns int64
		)
		bk := make([]int64, counts.NumBuckets)
		dest := []any{&r.Start, &r.ClientID, &r.Model, &r.Requests, &r.Inferences, &r.Errors, &r.Throttled, &ns}
		for i := range bk {
			dest = append(dest, &bk[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		r.Start = r.Start.UTC()
		r.ComputeSeconds = float64(ns) / 1e9
		r.buckets = make([]uint64, len(bk))
		for i, n := range bk {
			r.buckets[i] = uint64(max(n, 0))
			total[i] += r.buckets[i]
		}
		r.LatencyP50Ms, r.LatencyP99Ms = quantiles(r.buckets)
		rep.Rows = append(rep.Rows, r)
		t := &rep.Totals
		t.Requests += r.Requests
		t.Inferences += r.Inferences
		t.Errors += r.Errors
		t.Throttled += r.Throttled
		computeNS += ns
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	rep.Totals.ComputeSeconds = float64(computeNS) / 1e9
	rep.Totals.LatencyP50Ms, rep.Totals.LatencyP99Ms = quantiles(total)
	return rep, nil
}

// quantiles are the p50 and p99 latencies in milliseconds; nil without
// timed requests.
func quantiles(buckets []uint64) (p50, p99 *float64) {
	var n uint64
	for _, c := range buckets {
		n += c
	}
	if n == 0 {
		return nil, nil
	}
	ms := func(q float64) *float64 {
		v := float64(counts.Quantile(buckets, q)) / float64(time.Millisecond)
		return &v
	}
	return ms(0.5), ms(0.99)
}
