package rollout

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"

	"github.com/helixflow/helixflow/xds/translate"
)

// Evaluator measures a model's canary over a window ending now.
type Evaluator interface {
	Measure(ctx context.Context, model string, window time.Duration) (Measurement, error)
}

// Prometheus measures the canary from Envoy's cluster stats: every Envoy
// of the gateway counts the requests it sent to the canary's gRPC and REST
// clusters (translate.GRPCVariantCluster, HTTPVariantCluster), so the sums
// cover every replica.
//
// Errors are answers the canary is to blame for: 5xx on REST, and on gRPC
// the status codes whose HTTP equivalent is 5xx (grpcServerErrors). Envoy
// charges every gRPC answer to upstream_rq_xx as HTTP 200, error or not
// (TestPrometheusEnvoyGRPCErrors shows it with the real Envoy), so gRPC
// errors come from Envoy's gRPC statistics filter (envoy.filters.http.
// grpc_stats, per-code counters envoy_cluster_grpc_<code>), which also sees
// Envoy's own gRPC failures (connect failure, reset, timeout) as their
// status. Client errors (4xx, INVALID_ARGUMENT, NOT_FOUND) do not count.
type Prometheus struct {
	api promv1.API
}

// grpcServerErrors are the gRPC status codes whose HTTP equivalent is 5xx
// (gRPC's HTTP mapping, as Envoy's grpcToHttpStatus): UNKNOWN,
// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
var grpcServerErrors = []codes.Code{codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss}

// NewPrometheus returns a Prometheus that queries the HTTP API at url
// ("http://prometheus:9090").
func NewPrometheus(url string) (*Prometheus, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus %q: %w", url, err)
	}
	return &Prometheus{api: promv1.NewAPI(c)}, nil
}

// Queries returns the PromQL of Measure: requests, errors and p99 latency
// (ms) of the canary's clusters over window. Exported for the docs and
// tests, which show what the controller asks.
func Queries(modelName string, window time.Duration) (requests, errors, p99 string) {
	grpcName := translate.ClusterStatName(translate.GRPCVariantCluster(modelName, VariantCanary))
	httpName := translate.ClusterStatName(translate.HTTPVariantCluster(modelName, VariantCanary))
	both := "envoy_cluster_name=~" + strconv.Quote(regexp.QuoteMeta(grpcName)+"|"+regexp.QuoteMeta(httpName))
	w := promDuration(window)
	// upstream_rq_total counts every try, while the errors count each
	// request once (its last answer): retries are taken off, or a canary
	// failing every REST request (tried three times) would read 33%.
	requests = fmt.Sprintf("sum(%s) - (sum(%s) or vector(0))",
		grown(selector("envoy_cluster_upstream_rq_total{"+both+"}"), w),
		grown(selector("envoy_cluster_upstream_rq_retry{"+both+"}"), w))
	codeNames := make([]string, len(grpcServerErrors))
	for i, c := range grpcServerErrors {
		codeNames[i] = strconv.Itoa(int(c))
	}
	// Per-code counters differ only by name: the code becomes a label, or
	// the subtraction in grown would see duplicate series.
	grpcErrors := func(offset string) string {
		return fmt.Sprintf(`label_replace({__name__=~"envoy_cluster_grpc_(%s)",envoy_cluster_name=%q}%s, "grpc_code", "$1", "__name__", "envoy_cluster_grpc_(.+)")`,
			strings.Join(codeNames, "|"), grpcName, offset)
	}
	httpErrors := selector(fmt.Sprintf(`envoy_cluster_upstream_rq_xx{envoy_cluster_name=%q,envoy_response_code_class="5"}`, httpName))
	errors = fmt.Sprintf("sum(%s or %s)", grown(httpErrors, w), grown(grpcErrors, w))
	p99 = fmt.Sprintf("histogram_quantile(0.99, sum by (le) (%s))", grown(selector("envoy_cluster_upstream_rq_time_bucket{"+both+"}"), w))
	return requests, errors, p99
}

// selector is s, at an offset.
func selector(s string) func(offset string) string {
	return func(offset string) string { return s + offset }
}

// grown is how much each series of counter sel grew over window w.
// Not increase(): Envoy makes a response class's or gRPC code's counter
// and the latency histogram on first use, so a canary failing from its
// first request has an error series that starts at its first scrape with
// the errors so far, which increase() never counts (it sees only growth
// between samples, and extrapolates). A series Envoy made within the
// window started at 0, so its value is its growth; an older one grew by
// now minus then; a negative difference is a restarted Envoy, whose
// counter started again at 0.
func grown(sel func(offset string) string, w string) string {
	now := sel("")
	return fmt.Sprintf("((%s - %s) >= 0 or %s)", now, sel(" offset "+w), now)
}

// promDuration writes d in whole seconds, at least one.
func promDuration(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10) + "s"
}

// Measure asks Prometheus the three Queries at one instant.
func (p *Prometheus) Measure(ctx context.Context, modelName string, window time.Duration) (Measurement, error) {
	now := time.Now()
	qr, qe, qp := Queries(modelName, window)
	var m Measurement
	var err error
	if m.Requests, err = p.scalar(ctx, "requests", qr, now, 0); err != nil {
		return m, err
	}
	if m.Errors, err = p.scalar(ctx, "errors", qe, now, 0); err != nil {
		return m, err
	}
	if m.P99Ms, err = p.scalar(ctx, "p99", qp, now, math.NaN()); err != nil {
		return m, err
	}
	return m, nil
}

// scalar runs an instant query whose answer is one sample, or none
// (empty: no series matched). Errors name the query by what (the query
// itself is in Queries and the docs; the reason column stays readable).
func (p *Prometheus) scalar(ctx context.Context, what, q string, at time.Time, empty float64) (float64, error) {
	v, _, _, err := p.api.Query(ctx, q, at)
	if err != nil {
		return 0, fmt.Errorf("query of the canary's %s: %w", what, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return 0, fmt.Errorf("query of the canary's %s: answer is a %s, want a vector", what, v.Type())
	}
	switch len(vec) {
	case 0:
		return empty, nil
	case 1:
		return float64(vec[0].Value), nil
	}
	return 0, fmt.Errorf("query of the canary's %s: %d series, want one", what, len(vec))
}
