package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestMetricsHandlerExemplars: a scraper asking for OpenMetrics gets the
// exemplars; the text format has none to give.
func TestMetricsHandlerExemplars(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Help: "x"})
	reg.MustRegister(h)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	})
	Observe(trace.ContextWithSpanContext(context.Background(), sc), h, 0.02)

	srv := httptest.NewServer(MetricsHandler(reg))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("content type %q, want OpenMetrics", ct)
	}
	if want := `# {trace_id="` + sc.TraceID().String() + `"} 0.02`; !strings.Contains(string(body), want) {
		t.Fatalf("no exemplar %s in:\n%s", want, string(body))
	}
}

func TestEnabled(t *testing.T) {
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	if _, err := Setup(context.Background(), "test", Config{}); err != nil {
		t.Fatal(err)
	}
	if Enabled() {
		t.Error("Enabled with tracing off")
	}
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	otel.SetTracerProvider(tp)
	if !Enabled() {
		t.Error("not Enabled with an SDK provider installed")
	}
}
