package translate

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	collectortracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/xds/ir"
)

// otlpReceiver is an in-process OTLP/gRPC trace receiver: it keeps every
// span with its resource's service.name.
type otlpReceiver struct {
	collectortracev1.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	service string
	span    *tracev1.Span
}

func (o *otlpReceiver) Export(_ context.Context, req *collectortracev1.ExportTraceServiceRequest) (*collectortracev1.ExportTraceServiceResponse, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				o.spans = append(o.spans, receivedSpan{service, s})
			}
		}
	}
	return &collectortracev1.ExportTraceServiceResponse{}, nil
}

func (o *otlpReceiver) received() []receivedSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]receivedSpan(nil), o.spans...)
}

// traceparentAuthz allows everything and keeps the traceparent of each
// Check's gRPC metadata.
type traceparentAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu      sync.Mutex
	parents []string
}

func (a *traceparentAuthz) Check(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	a.mu.Lock()
	a.parents = append(a.parents, strings.Join(md.Get("traceparent"), ","))
	a.mu.Unlock()
	return &authv3.CheckResponse{Status: &status.Status{}}, nil
}

func serveGRPC(t *testing.T, register func(*grpc.Server)) uint32 {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return uint32(lis.Addr().(*net.TCPAddr).Port)
}

// clientTraceID is the trace id of the client's own, well-formed and
// sampled, traceparent; the gateway must not continue it.
const clientTraceID = "0af7651916cd43dd8448eb211c80319c"

// traceparents a client may send: none, a valid sampled one (a client
// asking for a trace), and malformed ones, each of which must be ignored.
var clientTraceparents = []string{
	"",
	"00-" + clientTraceID + "-b7ad6b7169203331-01",
	"garbage",
	"00-zz" + clientTraceID[2:] + "-b7ad6b7169203331-01",
	"00-00000000000000000000000000000000-b7ad6b7169203331-01",
	"ff-" + clientTraceID + "-b7ad6b7169203331-01",
	"00-" + clientTraceID + "-b7ad6b7169203331-01-extra",
	strings.Repeat("x", 4096),
}

// The real Envoy with the translated tracer and an in-process OTLP/gRPC
// receiver: at sampling 1 every request's spans (the gateway's, and the
// ext_authz call's child) reach the receiver under the configured service
// name, and helix-authz and the backend get the gateway's traceparent,
// sampled; at sampling 0 no span is exported although a client sent a
// sampled traceparent, and the backend gets an unsampled one. Either way a
// client's traceparent is not continued, and a malformed one is answered
// like any request.
func TestEnvoyTracing(t *testing.T) {
	envoytest.Binary(t)
	for _, tc := range []struct {
		name     string
		sampling float64
	}{{"sampling 1", 1}, {"sampling 0", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			recv := &otlpReceiver{}
			otlpPort := serveGRPC(t, func(s *grpc.Server) { collectortracev1.RegisterTraceServiceServer(s, recv) })
			authz := &traceparentAuthz{}
			authzPort := serveGRPC(t, func(s *grpc.Server) { authv3.RegisterAuthorizationServer(s, authz) })
			var mu sync.Mutex
			var upstream []string // traceparent of each request the backend got
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				upstream = append(upstream, strings.Join(r.Header.Values("traceparent"), ","))
				mu.Unlock()
				_, _ = w.Write([]byte("ok"))
			}))
			t.Cleanup(backend.Close)

			port := freeTCPPort(t)
			g := &ir.Gateway{
				Listener: ir.Listener{Address: "127.0.0.1", Port: port},
				AuthZ:    ir.AuthZ{Upstream: ir.Upstream{Address: "127.0.0.1", Port: authzPort}},
				Tracing: &ir.Tracing{
					Collector:   ir.Upstream{Address: "127.0.0.1", Port: otlpPort},
					Sampling:    tc.sampling,
					ServiceName: "helix-gateway-test",
				},
			}
			g.ApplyDefaults()
			r, err := Translate(g)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "bootstrap.json")
			b := fastFlush(t, sourceLimitBootstrap(t, r, uint32(backend.Listener.Addr().(*net.TCPAddr).Port)))
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			envoytest.Start(t, path)
			url := fmt.Sprintf("http://127.0.0.1:%d/v2/models/simple/infer", port)
			c := &http.Client{Timeout: 5 * time.Second}
			get := func(traceparent string) (*http.Response, error) {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if traceparent != "" {
					req.Header.Set("traceparent", traceparent)
					req.Header.Set("tracestate", "client=1")
				}
				resp, err := c.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				return resp, err
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				if _, err := get(""); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("Envoy's listener did not come up")
				}
				time.Sleep(50 * time.Millisecond)
			}
			mu.Lock()
			upstream = nil
			mu.Unlock()
			authz.mu.Lock()
			authz.parents = nil
			authz.mu.Unlock()

			for _, tp := range clientTraceparents {
				resp, err := get(tp)
				if err != nil {
					t.Fatalf("traceparent %.40q: %v", tp, err)
				}
				if resp.StatusCode != http.StatusOK {
					t.Errorf("traceparent %.40q: status %d, want 200", tp, resp.StatusCode)
				}
			}

			mu.Lock()
			got := append([]string(nil), upstream...)
			mu.Unlock()
			authz.mu.Lock()
			checks := append([]string(nil), authz.parents...)
			authz.mu.Unlock()
			if len(got) != len(clientTraceparents) || len(checks) != len(clientTraceparents) {
				t.Fatalf("backend got %d requests, helix-authz %d Checks, want %d each", len(got), len(checks), len(clientTraceparents))
			}
			wantFlags := "-00"
			if tc.sampling == 1 {
				wantFlags = "-01"
			}
			traceIDs := map[string]bool{}
			upstreamParent := map[string]string{} // trace id -> parent id the backend got
			for i, tp := range got {
				id, ok := parseTraceparent(tp)
				if !ok || !strings.HasSuffix(tp, wantFlags) {
					t.Errorf("request %d: the backend got traceparent %q, want one of the gateway's ending %s", i, tp, wantFlags)
					continue
				}
				if id == clientTraceID {
					t.Errorf("request %d: the gateway continued the client's trace %s", i, id)
				}
				traceIDs[id] = true
				upstreamParent[id] = strings.Split(tp, "-")[2]
				if cid, ok := parseTraceparent(checks[i]); !ok || cid != id {
					t.Errorf("request %d: helix-authz got traceparent %q, the backend %q: not the same trace", i, checks[i], tp)
				}
			}
			if len(traceIDs) != len(got) {
				t.Errorf("%d trace ids for %d requests: each request is its own trace", len(traceIDs), len(got))
			}

			if tc.sampling == 0 {
				// Well past the flush interval (fastFlush): nothing comes.
				time.Sleep(2 * time.Second)
				if spans := recv.received(); len(spans) != 0 {
					t.Fatalf("sampling 0: %d spans exported, first %v", len(spans), spans[0].span)
				}
				return
			}
			// Every request's trace reaches the receiver: the gateway's
			// server span and the ext_authz call's child span.
			deadline = time.Now().Add(10 * time.Second)
			for {
				spans := recv.received()
				missing := missingTraces(spans, traceIDs)
				if len(missing) == 0 {
					parented := 0
					for _, s := range spans {
						if s.service != "helix-gateway-test" {
							t.Errorf("span %q has service.name %q", s.span.GetName(), s.service)
						}
						id := hex.EncodeToString(s.span.GetTraceId())
						if id == clientTraceID {
							t.Errorf("span %q continues the client's trace", s.span.GetName())
						}
						// The worker's spans are children of the server span.
						if s.span.GetKind() == tracev1.Span_SPAN_KIND_SERVER && upstreamParent[id] != "" &&
							hex.EncodeToString(s.span.GetSpanId()) != upstreamParent[id] {
							t.Errorf("trace %s: the backend's parent %s is not the server span %x", id, upstreamParent[id], s.span.GetSpanId())
						} else if s.span.GetKind() == tracev1.Span_SPAN_KIND_SERVER && upstreamParent[id] != "" {
							parented++
						}
					}
					if parented != len(traceIDs) {
						t.Errorf("%d of %d traces have a server span the backend's request is a child of", parented, len(traceIDs))
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("no server span and ext_authz child span for traces %v; got %d spans: %v", missing, len(spans), describe(spans))
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// parseTraceparent returns the trace id of a well-formed version-00
// traceparent.
func parseTraceparent(tp string) (string, bool) {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return "", false
	}
	if _, err := hex.DecodeString(parts[1] + parts[2] + parts[3]); err != nil {
		return "", false
	}
	return parts[1], true
}

// missingTraces lists the trace ids without both a server span (no parent)
// and a child of it (the ext_authz call).
func missingTraces(spans []receivedSpan, ids map[string]bool) []string {
	roots := map[string]string{} // trace id -> root span id
	for _, s := range spans {
		if len(s.span.GetParentSpanId()) == 0 && s.span.GetKind() == tracev1.Span_SPAN_KIND_SERVER {
			roots[hex.EncodeToString(s.span.GetTraceId())] = hex.EncodeToString(s.span.GetSpanId())
		}
	}
	child := map[string]bool{}
	for _, s := range spans {
		id := hex.EncodeToString(s.span.GetTraceId())
		if root, ok := roots[id]; ok && hex.EncodeToString(s.span.GetParentSpanId()) == root {
			child[id] = true
		}
	}
	var missing []string
	for id := range ids {
		if !child[id] {
			missing = append(missing, id)
		}
	}
	return missing
}

func describe(spans []receivedSpan) []string {
	out := make([]string, 0, len(spans))
	for _, s := range spans {
		out = append(out, fmt.Sprintf("%s %s trace=%x parent=%x", s.span.GetKind(), s.span.GetName(), s.span.GetTraceId(), s.span.GetParentSpanId()))
	}
	return out
}

// fastFlush makes Envoy's OpenTelemetry tracer export every 200ms instead
// of every 5s (a runtime key, not part of the translated config).
func fastFlush(t *testing.T, js []byte) []byte {
	t.Helper()
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		t.Fatal(err)
	}
	layer, err := structpb.NewStruct(map[string]any{"tracing.opentelemetry.flush_interval_ms": 200})
	if err != nil {
		t.Fatal(err)
	}
	b.LayeredRuntime = &bootstrapv3.LayeredRuntime{Layers: []*bootstrapv3.RuntimeLayer{{
		Name:           "test",
		LayerSpecifier: &bootstrapv3.RuntimeLayer_StaticLayer{StaticLayer: layer},
	}}}
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
