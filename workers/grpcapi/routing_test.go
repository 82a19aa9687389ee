package grpcapi

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
)

// versionRecorder is a service that records the version each request was
// run for.
type versionRecorder struct {
	*fakeService
	mu       sync.Mutex
	versions []string
}

func newVersionRecorder() *versionRecorder {
	v := &versionRecorder{fakeService: newFakeService()}
	v.inferFn = func(_ context.Context, req *infer.Request) (*infer.Response, error) {
		v.mu.Lock()
		v.versions = append(v.versions, req.Version)
		v.mu.Unlock()
		req.Usage = infer.Usage{Rows: 1}
		return echo(req), nil
	}
	return v
}

func (v *versionRecorder) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.versions)
}

func (v *versionRecorder) last() (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.versions) == 0 {
		return "", false
	}
	return v.versions[len(v.versions)-1], true
}

// streamOne sends req on a new stream and returns its one answer's error
// message, or the stream's error.
func streamOne(ctx context.Context, c pb.GRPCInferenceServiceClient, req *pb.ModelInferRequest) (string, error) {
	stream, err := c.ModelStreamInfer(ctx)
	if err != nil {
		return "", err
	}
	if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	_ = stream.CloseSend()
	msg := ""
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return msg, nil
		}
		if err != nil {
			return "", err
		}
		msg = resp.GetErrorMessage()
	}
}

// TestTrafficVersion: a request that names no version is run for the
// version a traffic policy's route chose (x-helix-model-version); one that
// names a version keeps it; bad routing headers are refused
// INVALID_ARGUMENT naming the header, on ModelInfer and ModelStreamInfer.
func TestTrafficVersion(t *testing.T) {
	svc := newVersionRecorder()
	c := startServer(t, svc).infer
	for _, tc := range []struct {
		name    string
		md      []string
		version string // the request's model_version
		want    string // the version run
		errPart string // else: INVALID_ARGUMENT with this
	}{
		{name: "no policy", want: ""},
		{name: "policy's version", md: []string{wire.HeaderModelVersion, "2"}, want: "2"},
		{name: "request's version wins", md: []string{wire.HeaderModelVersion, "2"}, version: "1", want: "1"},
		{name: "shadow copy of a version", md: []string{wire.HeaderModelVersion, "3", wire.HeaderShadow, "1"}, want: "3"},
		{name: "two versions", md: []string{wire.HeaderModelVersion, "2", wire.HeaderModelVersion, "3"}, errPart: "2 x-helix-model-version headers"},
		{name: "not a version", md: []string{wire.HeaderModelVersion, "v2"}, errPart: "header x-helix-model-version: not a valid model version"},
		{name: "shadow not 1", md: []string{wire.HeaderShadow, "true"}, errPart: `header x-helix-shadow is "true"; the gateway sets 1`},
	} {
		for _, rpc := range []string{"ModelInfer", "ModelStreamInfer"} {
			t.Run(tc.name+"/"+rpc, func(t *testing.T) {
				ctx := metadata.AppendToOutgoingContext(t.Context(), tc.md...)
				req := int32Request("simple", 2)
				req.ModelVersion = tc.version
				before := svc.count()
				var err error
				if rpc == "ModelInfer" {
					_, err = c.ModelInfer(ctx, req)
				} else {
					var msg string
					msg, err = streamOne(ctx, c, req)
					if err == nil && msg != "" {
						t.Fatalf("answered %q", msg)
					}
				}
				if tc.errPart != "" {
					wantCode(t, err, codes.InvalidArgument, tc.errPart)
					if svc.count() != before {
						t.Fatal("a refused request ran")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got, ran := svc.last(); !ran || got != tc.want || svc.count() != before+1 {
					t.Fatalf("ran version %q (ran %v), want %q", got, ran, tc.want)
				}
			})
		}
	}
}

// TestShadowNotCounted: a shadow copy (x-helix-shadow: 1) is served, but
// records no usage and spends no stream limit; the same request without
// the header is counted.
func TestShadowNotCounted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shadow bool
	}{
		{"shadow", true},
		{"primary", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agg := usage.NewAggregator(100)
			lim := &fakeLimiter{allow: 10}
			c := startServerOptions(t, newVersionRecorder(), Options{Usage: agg, Limiter: lim}).infer
			ctx := gatewayContext(t, time.Now().Add(time.Hour))
			ctx = metadata.AppendToOutgoingContext(ctx, wire.HeaderModel, "simple")
			if tc.shadow {
				ctx = metadata.AppendToOutgoingContext(ctx, wire.HeaderShadow, "1")
			}
			if _, err := c.ModelInfer(ctx, int32Request("simple", 2)); err != nil {
				t.Fatal(err)
			}
			if msg, err := streamOne(ctx, c, int32Request("simple", 2)); err != nil || msg != "" {
				t.Fatalf("stream: %q, %v", msg, err)
			}
			rows := agg.Drain()
			lim.mu.Lock()
			spent := len(lim.counts)
			lim.mu.Unlock()
			if tc.shadow {
				if len(rows) != 0 || spent != 0 {
					t.Fatalf("shadow copy counted: usage %v, %d limiter calls", rows, spent)
				}
				return
			}
			if len(rows) != 1 || rows[0].Requests != 2 || spent != 1 {
				t.Fatalf("primary: usage %v, %d limiter calls; want 2 requests and 1 spend", rows, spent)
			}
		})
	}
}

// TestTrafficVersionStatus: the stream's routing error is its status.
func TestTrafficVersionStatus(t *testing.T) {
	c := startServer(t, newVersionRecorder()).infer
	ctx := metadata.AppendToOutgoingContext(t.Context(), wire.HeaderShadow, "1", wire.HeaderShadow, "1")
	_, err := streamOne(ctx, c, int32Request("simple", 2))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("stream with two %s: %v", wire.HeaderShadow, err)
	}
}
