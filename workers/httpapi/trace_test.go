package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/workers/scheduler/schedtest"
)

const traceBody = `{"id":"r","inputs":[{"name":"x","datatype":"INT32","shape":[1,2],"data":[1,2]}]}`

func postTraced(t *testing.T, url, traceparent string) error {
	req, err := http.NewRequest(http.MethodPost, url+"/v2/models/simple/infer", bytes.NewBufferString(traceBody))
	if err != nil {
		return err
	}
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("traceparent %q: status %d: %s", traceparent, resp.StatusCode, b)
	}
	return nil
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestTraceBatchedRequests: three REST requests in their own sampled traces
// run as one batch; each has its server span under the gateway's span and
// its own queue, batch, execute and encode spans.
func TestTraceBatchedRequests(t *testing.T) {
	rec := schedtest.Tracing()
	svc := schedtest.New(t)
	srv := httptest.NewServer(NewHandler(svc, quiet))
	t.Cleanup(srv.Close)

	svc.Hold()
	held := make(chan error, 1)
	go func() { held <- postTraced(t, srv.URL, "") }()
	waitUntil(t, "the held execution", func() bool { return svc.Executions() == 1 })
	const n = 3
	ids := make([]trace.TraceID, n)
	callers := make([]trace.SpanID, n)
	errs := make(chan error, n)
	for i := range n {
		ids[i], callers[i] = schedtest.IDs()
		tp := schedtest.Traceparent(ids[i], callers[i], true)
		go func() { errs <- postTraced(t, srv.URL, tp) }()
	}
	waitUntil(t, "the requests to queue", func() bool { return svc.Sched.Pending() == n })
	svc.Release()
	for range n + 1 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case err := <-held:
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range n {
		schedtest.CheckRequest(t, rec, ids[i], callers[i], spanInfer, n)
	}
}

func TestTraceUnsampledAndMalformedRecordNothing(t *testing.T) {
	rec := schedtest.Tracing()
	svc := schedtest.New(t)
	srv := httptest.NewServer(NewHandler(svc, quiet))
	t.Cleanup(srv.Close)
	id, _ := schedtest.IDs()
	for _, tp := range []string{
		schedtest.Traceparent(id, trace.SpanID{1}, false),
		"garbage",
		"00-" + id.String() + "-zz00000000000000-01",
		"00-" + id.String() + "-0000000000000000-01", // all-zero span id
	} {
		if err := postTraced(t, srv.URL, tp); err != nil {
			t.Fatal(err)
		}
	}
	if spans := schedtest.Spans(rec, id); len(spans) != 0 {
		t.Errorf("%d spans recorded for an unsampled or malformed traceparent", len(spans))
	}
}
