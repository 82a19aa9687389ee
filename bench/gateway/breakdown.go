package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/helixflow/helixflow/xds/translate"
)

// Where a request's time goes, per run: Envoy's own histograms (whole
// milliseconds) of the request as a whole, of the ext_authz call and of
// the call to the worker, and helix-authz's (microseconds) of its Check
// and of the Redis round trip inside it.

// Envoy histograms the breakdown reads (names as in /stats, where Envoy
// writes a cluster name's '/' as '_').
var (
	histDownstream = "http." + translate.StatPrefix + ".downstream_rq_time"
	histAuthzCall  = "cluster." + statName(translate.ClusterAuthZ) + ".upstream_rq_time"
	// The worker is reached through simple's own cluster, or the default
	// pool's when nothing names the model for routing (the TLS-only Envoy:
	// the model's header comes from ext_authz).
	histWorker        = "cluster." + statName(translate.GRPCCluster("simple")) + ".upstream_rq_time"
	histWorkerDefault = "cluster." + statName(translate.ClusterDefaultGRPC) + ".upstream_rq_time"
)

// statName is a cluster name as Envoy's stats spell it (the cluster's
// alt_stat_name).
func statName(cluster string) string { return translate.ClusterStatName(cluster) }

// bucket is one bucket of an Envoy histogram: values from lower to
// lower+width (milliseconds), count of them.
type bucket struct {
	lower, width float64
	count        uint64
}

// histogram is an Envoy histogram's buckets, in ascending order.
type histogram []bucket

// envoyHistograms reads Envoy's cumulative histograms with their buckets
// (/stats?format=json&histogram_buckets=detailed).
func envoyHistograms(ctx context.Context, e *envoy) (map[string]histogram, error) {
	b, err := httpGet(ctx, http.DefaultClient, e.adminURL+"/stats?format=json&usedonly&histogram_buckets=detailed&filter=rq_time$")
	if err != nil {
		return nil, fmt.Errorf("%s histograms: %w", e.Name(), err)
	}
	return parseHistograms(b)
}

// parseHistograms reads the "totals" (since Envoy started) of every
// histogram in a detailed JSON stats dump.
func parseHistograms(b []byte) (map[string]histogram, error) {
	var dump struct {
		Stats []struct {
			Histograms *struct {
				Details []struct {
					Name   string `json:"name"`
					Totals []struct {
						Lower float64 `json:"lower_bound"`
						Width float64 `json:"width"`
						Count uint64  `json:"count"`
					} `json:"totals"`
				} `json:"details"`
			} `json:"histograms"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(b, &dump); err != nil {
		return nil, fmt.Errorf("Envoy histograms: %w", err)
	}
	out := map[string]histogram{}
	for _, s := range dump.Stats {
		if s.Histograms == nil {
			continue
		}
		for _, d := range s.Histograms.Details {
			h := make(histogram, 0, len(d.Totals))
			for _, t := range d.Totals {
				h = append(h, bucket{t.Lower, t.Width, t.Count})
			}
			slices.SortFunc(h, func(a, b bucket) int { return cmp.Compare(a.lower, b.lower) })
			out[d.Name] = h
		}
	}
	return out, nil
}

// sub is h minus an earlier reading of the same histogram: the values
// recorded in between.
func (h histogram) sub(earlier histogram) histogram {
	type key struct{ lower, width float64 }
	before := make(map[key]uint64, len(earlier))
	for _, b := range earlier {
		before[key{b.lower, b.width}] = b.count
	}
	var out histogram
	for _, b := range h {
		if n := b.count - min(b.count, before[key{b.lower, b.width}]); n > 0 {
			out = append(out, bucket{b.lower, b.width, n})
		}
	}
	return out
}

// add is the histogram of h's values and o's.
func (h histogram) add(o histogram) histogram {
	type key struct{ lower, width float64 }
	n := map[key]uint64{}
	for _, b := range append(slices.Clone(h), o...) {
		n[key{b.lower, b.width}] += b.count
	}
	out := make(histogram, 0, len(n))
	for k, c := range n {
		out = append(out, bucket{k.lower, k.width, c})
	}
	slices.SortFunc(out, func(a, b bucket) int { return cmp.Compare(a.lower, b.lower) })
	return out
}

func (h histogram) count() uint64 {
	var n uint64
	for _, b := range h {
		n += b.count
	}
	return n
}

// span is the range of true values a bucket stands for. Envoy records
// these times as whole milliseconds, truncated: a recorded v was a time in
// [v, v+1), whatever the bucket's own width (0 for v = 0, 0.1 below 10).
func (b bucket) span() float64 { return max(b.width, 1) }

// quantile (0..1) of h in milliseconds, values spread evenly over each
// bucket's span; 0 for an empty histogram.
func (h histogram) quantile(q float64) float64 {
	n := h.count()
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var seen float64
	for _, b := range h {
		c := float64(b.count)
		if seen+c >= rank {
			return b.lower + b.span()*(rank-seen)/c
		}
		seen += c
	}
	last := h[len(h)-1]
	return last.lower + last.span()
}

// mean of h in milliseconds, each value at the middle of its span.
func (h histogram) mean() float64 {
	n := h.count()
	if n == 0 {
		return 0
	}
	var sum float64
	for _, b := range h {
		sum += float64(b.count) * (b.lower + b.span()/2)
	}
	return sum / float64(n)
}

// authzMetrics are helix-authz's figures the report reads from /metrics.
type authzMetrics struct {
	// Plan rate-limit decisions by result (allowed, over_limit, error).
	decisions map[string]float64
	// Check and the Redis round trip within it: sums (seconds) and counts.
	checkSum, checkCount, redisSum, redisCount float64
}

// Metric names the breakdown reads from helix-authz.
const (
	metricDecisions = "helix_authz_ratelimit_decisions_total"
	metricCheck     = "helix_authz_check_duration_seconds"
	metricRedis     = "helix_authz_ratelimit_redis_seconds"
)

// scrapeAuthz reads helix-authz's /metrics.
func scrapeAuthz(ctx context.Context, url string) (*authzMetrics, error) {
	b, err := httpGet(ctx, http.DefaultClient, url)
	if err != nil {
		return nil, fmt.Errorf("helix-authz metrics: %w", err)
	}
	return parseAuthzMetrics(strings.NewReader(string(b)))
}

func parseAuthzMetrics(r io.Reader) (*authzMetrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("helix-authz metrics: %w", err)
	}
	m := &authzMetrics{decisions: map[string]float64{}}
	if f := fams[metricDecisions]; f != nil {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "result" {
					m.decisions[l.GetValue()] += s.GetCounter().GetValue()
				}
			}
		}
	}
	hist := func(name string) (sum, count float64) {
		if f := fams[name]; f != nil {
			for _, s := range f.GetMetric() {
				sum += s.GetHistogram().GetSampleSum()
				count += float64(s.GetHistogram().GetSampleCount())
			}
		}
		return sum, count
	}
	m.checkSum, m.checkCount = hist(metricCheck)
	m.redisSum, m.redisCount = hist(metricRedis)
	return m, nil
}

// sub is m minus an earlier reading: what happened in between.
func (m *authzMetrics) sub(earlier *authzMetrics) *authzMetrics {
	d := &authzMetrics{decisions: map[string]float64{},
		checkSum: m.checkSum - earlier.checkSum, checkCount: m.checkCount - earlier.checkCount,
		redisSum: m.redisSum - earlier.redisSum, redisCount: m.redisCount - earlier.redisCount}
	for k, v := range m.decisions {
		d.decisions[k] = v - earlier.decisions[k]
	}
	return d
}

// meanCheck and meanRedis are the mean Check and Redis round trip; 0
// without any.
func (m *authzMetrics) meanCheck() time.Duration { return meanSeconds(m.checkSum, m.checkCount) }
func (m *authzMetrics) meanRedis() time.Duration { return meanSeconds(m.redisSum, m.redisCount) }

func meanSeconds(sum, count float64) time.Duration {
	if count <= 0 {
		return 0
	}
	return time.Duration(sum / count * float64(time.Second))
}

// breakdown is where one run's requests spent their time.
type breakdown struct {
	// Envoy's histograms over the run (milliseconds).
	downstream, authzCall, worker histogram
	// helix-authz over the run; nil on paths without it.
	authz *authzMetrics
}

// restOfEnvoy is the mean time of a request in Envoy beyond the ext_authz
// call and the worker (milliseconds): TLS, HTTP/2, filters, routing,
// waiting for a thread.
func (b *breakdown) restOfEnvoy() float64 {
	return b.downstream.mean() - b.authzCall.mean() - b.worker.mean()
}

// reading is the cumulative state a breakdown is the difference of.
type reading struct {
	hists map[string]histogram
	authz *authzMetrics
}

// read takes a reading of e and, with an authzURL, helix-authz.
func read(ctx context.Context, e *envoy, authzURL string) (*reading, error) {
	h, err := envoyHistograms(ctx, e)
	if err != nil {
		return nil, err
	}
	r := &reading{hists: h}
	if authzURL != "" {
		if r.authz, err = scrapeAuthz(ctx, authzURL); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// since is the breakdown of what happened between earlier and r.
func (r *reading) since(earlier *reading) *breakdown {
	b := &breakdown{
		downstream: r.hists[histDownstream].sub(earlier.hists[histDownstream]),
		authzCall:  r.hists[histAuthzCall].sub(earlier.hists[histAuthzCall]),
		worker: r.hists[histWorker].sub(earlier.hists[histWorker]).
			add(r.hists[histWorkerDefault].sub(earlier.hists[histWorkerDefault])),
	}
	if r.authz != nil && earlier.authz != nil {
		b.authz = r.authz.sub(earlier.authz)
	}
	return b
}

// Results of helix_authz_ratelimit_decisions_total.
const (
	decisionAllowed   = "allowed"
	decisionOverLimit = "over_limit"
	decisionError     = "error"
)
