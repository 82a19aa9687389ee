package usage_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/usage"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
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

// FuzzValidateMatchesSchema: a batch Validate accepts is one Postgres
// stores (no CHECK or type refuses it, which would make a reporter resend
// it for ever); one it refuses is ErrInvalid and changes nothing.
func FuzzValidateMatchesSchema(f *testing.F) {
	f.Add("worker/w/b", uint64(1), int64(1764583200), "client-a", "resnet", uint64(3), 16)
	f.Add("", uint64(0), int64(-3600), "", "", uint64(1<<63), 1)
	f.Add("w", uint64(1<<62), int64(253402297200), "c\x00", "m/../x", uint64(0), 0)
	st, _ := newStore(f)
	var seq uint64
	f.Fuzz(func(t *testing.T, reporter string, seqIn uint64, hour int64, client, model string, n uint64, nb int) {
		req := &usagev1.RecordRequest{Reporter: reporter, Seq: seqIn, Rows: []*usagev1.UsageRow{{
			HourUnix: hour, ClientId: client, Model: model, Requests: n, Inferences: n, ComputeNs: n,
		}}}
		if nb >= 0 && nb < 40 {
			req.Rows[0].LatencyBuckets = make([]uint64, nb)
		}
		err := usage.Validate(req)
		if err != nil {
			if !errors.Is(err, usage.ErrInvalid) {
				t.Fatalf("refusal %v is not ErrInvalid", err)
			}
			return
		}
		// A fresh mark per run, so that the rows are applied.
		seq++
		req.Reporter = fmt.Sprintf("fuzz/%d", seq)
		if _, err := st.Apply(context.Background(), req, nil); err != nil {
			t.Fatalf("Validate accepted %v, Postgres refused it: %v", req, err)
		}
	})
}
