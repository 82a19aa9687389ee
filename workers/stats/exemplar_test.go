package stats

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/workers/scheduler"
)

// TestLatencyExemplars: a sampled request's trace id is an exemplar of the
// latency histograms in the OpenMetrics exposition; unsampled requests add
// none.
func TestLatencyExemplars(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRecorder("mlp", 1, m)
	id := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	r.RequestDone(scheduler.RequestStats{Success: true, BatchSize: 1, Queue: 2 * time.Millisecond, Total: 30 * time.Millisecond, Trace: id})
	r.RequestDone(scheduler.RequestStats{Success: true, BatchSize: 1, Queue: time.Millisecond, Total: 3 * time.Second})

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, metric := range []string{"helix_inference_request_duration_seconds_bucket", "helix_inference_queue_duration_seconds_bucket"} {
		var withExemplar []string
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, metric) && strings.Contains(line, " # {") {
				withExemplar = append(withExemplar, line)
			}
		}
		if len(withExemplar) != 1 || !strings.Contains(withExemplar[0], `trace_id="`+id.String()+`"`) {
			t.Errorf("%s: lines with exemplars %q, want one with trace_id %s", metric, withExemplar, id)
		}
	}
}
