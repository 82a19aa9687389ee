package check

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/helixflow/helixflow/internal/wire"
)

// benchChecks runs b.N checks from c concurrent callers and reports p50
// and p99 latency. check is one Check call.
func benchChecks(b *testing.B, c int, check func(context.Context) error) {
	b.Helper()
	ctx := context.Background()
	lat := make([][]time.Duration, c)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				start := time.Now()
				if err := check(ctx); err != nil {
					failed.Store(err)
					return
				}
				lat[w] = append(lat[w], time.Since(start))
			}
		}(w)
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
}

func benchCheck(b *testing.B, req *authv3.CheckRequest, e *env) {
	ok := func(resp *authv3.CheckResponse) error {
		if code := codes.Code(resp.GetStatus().GetCode()); code != codes.OK {
			return fmt.Errorf("check answered %v", code)
		}
		return nil
	}
	client := startServer(b, e)
	for _, c := range []int{1, 64} {
		b.Run(fmt.Sprintf("inproc/c=%d", c), func(b *testing.B) {
			benchChecks(b, c, func(ctx context.Context) error {
				resp, _ := e.svc.Check(ctx, req)
				return ok(resp)
			})
		})
		b.Run(fmt.Sprintf("grpc/c=%d", c), func(b *testing.B) {
			benchChecks(b, c, func(ctx context.Context) error {
				resp, err := client.Check(ctx, req)
				if err != nil {
					return err
				}
				return ok(resp)
			})
		})
	}
}

func BenchmarkCheckJWT(b *testing.B) {
	e := newEnv(b)
	tok := e.mint(b, claims([]string{"models:resnet:infer"}, []string{"resnet"}))
	benchCheck(b, grpcReq("ModelInfer", inferBody(b, "resnet", "1", 64), bearerHdr(tok)), e)
}

func BenchmarkCheckAPIKey(b *testing.B) {
	e := newEnv(b)
	key := "hx_0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
	e.apik.add(key, Principal{ClientID: "client-k", Plan: "free", Scopes: []string{"models:resnet:infer"}, Models: []string{"resnet"}})
	benchCheck(b, grpcReq("ModelInfer", inferBody(b, "resnet", "1", 64), map[string]string{"x-api-key": key}), e)
}

// BenchmarkCheckWebSocket: a browser's upgrade, the token among the
// subprotocols (no plan unit spent; the stream's credential headers set).
func BenchmarkCheckWebSocket(b *testing.B) {
	e := newEnv(b)
	tok := e.mint(b, claims([]string{"models:resnet:infer"}, []string{"resnet"}))
	benchCheck(b, restReq("GET", "/v2/models/resnet/infer/ws", map[string]string{
		wire.HeaderWSProtocol: wire.WSProtocol + ", " + wire.WSTokenProtocolPrefix + tok,
	}), e)
}

// BenchmarkSequenceFromJSONBody is what a REST inference on a sequence
// model adds to its Check: reading parameters.sequence_id from the 4 KiB
// head Envoy sends (authz.rest_body_bytes), written as tritonclient writes
// it (inputs and outputs first, parameters last: the worst case, every
// value before them scanned), plain and gzip-compressed.
func BenchmarkSequenceFromJSONBody(b *testing.B) {
	var data []byte
	for i := 0; len(data) < 4000; i++ {
		data = fmt.Appendf(data, "%d,", i)
	}
	body := []byte(`{"inputs":[{"name":"INPUT","shape":[1,1000],"datatype":"INT32","data":[` + string(data[:len(data)-1]) +
		`]}],"outputs":[{"name":"OUTPUT","parameters":{"binary_data":true}}],"parameters":{"sequence_id":1000,"sequence_start":true}}`)
	head := body[:min(len(body), 4096)]
	zipped := gzipped(b, body)
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"plain-4KiB", head, ""}, // cut before the parameters: scanned in full, nothing found
		{"plain-whole", body, "1000"},
		{"gzip", zipped, "1000"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.body)))
			for b.Loop() {
				if got := sequenceFromJSONBody(tc.body); got != tc.want {
					b.Fatalf("sequence %q, want %q", got, tc.want)
				}
			}
		})
	}
}

func gzipped(tb testing.TB, data []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
