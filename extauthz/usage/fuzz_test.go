package usage_test

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/usage"
)

// FuzzParseQuery: any query string is parsed or refused with ErrBadQuery;
// a parsed one is a whole-hour range of at most MaxRange, after from, with
// a known granularity and format.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "from=2026-12-01&to=2026-12-07", "granularity=day&format=csv", "from=2026-12-01T10:30:00%2B02:00",
		"to=2026-12-01", "model=resnet&client=c1", "org=0b9f3c6e-7d0a-4c1e-9a51-1f0e5d1a2b3c", "from=9998-12-31", "a=b&a=c", "%zz"} {
		f.Add(s, true)
	}
	now := time.Date(2026, 12, 3, 10, 17, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string, withOrg bool) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := usage.ParseQuery(v, now, withOrg)
		if err != nil {
			if !errors.Is(err, usage.ErrBadQuery) {
				t.Fatalf("%q: error %v does not wrap ErrBadQuery", raw, err)
			}
			return
		}
		switch {
		case !q.To.After(q.From), q.To.Sub(q.From) > usage.MaxRange:
			t.Fatalf("%q: range %s..%s", raw, q.From, q.To)
		case q.From.Truncate(time.Hour) != q.From || q.To.Truncate(time.Hour) != q.To:
			t.Fatalf("%q: range %s..%s not in whole hours", raw, q.From, q.To)
		case q.Granularity != usage.Hour && q.Granularity != usage.Day:
			t.Fatalf("%q: granularity %q", raw, q.Granularity)
		case q.Format != usage.FormatJSON && q.Format != usage.FormatCSV:
			t.Fatalf("%q: format %q", raw, q.Format)
		case q.Org != "" && !withOrg:
			t.Fatalf("%q: org accepted without withOrg", raw)
		}
	})
}
