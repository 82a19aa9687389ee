package telemetry

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// otlpReceiver is an OTLP/gRPC trace collector in the test: it keeps what
// it is sent.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu   sync.Mutex
	reqs []*collectortrace.ExportTraceServiceRequest
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// TestSetupExportsToCollector: with --otlp-endpoint, a sampled span
// reaches the collector, under the daemon's service name, by the time the
// shutdown (with its deadline) returns.
func TestSetupExportsToCollector(t *testing.T) {
	recv := &otlpReceiver{}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, recv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	shutdown, err := Setup(t.Context(), "helix-test", Config{Endpoint: lis.Addr().String(), PlaintextLoopback: true, RootSampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, span := Tracer("test").Start(context.Background(), "work")
	span.End()
	Shutdown(shutdown, 10*time.Second, slog.New(slog.DiscardHandler))

	recv.mu.Lock()
	defer recv.mu.Unlock()
	var service, name string
	for _, req := range recv.reqs {
		for _, rs := range req.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					name = s.GetName()
				}
			}
		}
	}
	if service != "helix-test" || name != "work" {
		t.Errorf("collector got service %q span %q, want helix-test and work (%d exports)", service, name, len(recv.reqs))
	}
}
