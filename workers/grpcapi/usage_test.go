package grpcapi

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
	"github.com/helixflow/helixflow/workers/infer"
)

// TestUsageIsCounted: unary and stream requests carrying x-helix-client
// are counted per client and model, failures as errors; requests without
// the header are not counted.
func TestUsageIsCounted(t *testing.T) {
	svc := newFakeService()
	svc.inferFn = func(_ context.Context, req *infer.Request) (*infer.Response, error) {
		if req.Model != "simple" {
			req.Usage = infer.Usage{Compute: time.Millisecond} // ran, then failed
			return nil, infer.Errorf(infer.CodeInternal, "boom")
		}
		req.Usage = infer.Usage{Rows: 2, Compute: 3 * time.Millisecond}
		return echo(req), nil
	}
	agg := usage.NewAggregator(100)
	c := startServerOptions(t, svc, Options{Usage: agg}).infer
	as := func(client, model string) context.Context {
		return metadata.AppendToOutgoingContext(t.Context(), wire.HeaderClient, client, wire.HeaderModel, model)
	}

	if _, err := c.ModelInfer(t.Context(), int32Request("simple", 4)); err != nil {
		t.Fatal(err) // no client: not counted
	}
	for range 2 {
		if _, err := c.ModelInfer(as("acme", "simple"), int32Request("simple", 4)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ModelInfer(as("acme", "cold"), int32Request("cold", 4)); err == nil {
		t.Fatal("want the service's error")
	}
	bad := int32Request("simple", 4)
	bad.RawInputContents = nil // does not decode
	if _, err := c.ModelInfer(as("acme", "simple"), bad); err == nil {
		t.Fatal("want a decoding error")
	}

	stream, err := c.ModelStreamInfer(as("beta", "simple"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := stream.Send(int32Request("simple", 4)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}

	rows := agg.Drain()
	want := []struct {
		client, model                          string
		requests, inferences, errors, computeN uint64
	}{
		{"acme", "cold", 1, 0, 1, uint64(time.Millisecond)},
		{"acme", "simple", 3, 4, 1, uint64(6 * time.Millisecond)},
		{"beta", "simple", 3, 6, 0, uint64(9 * time.Millisecond)},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows = %v, want %d", rows, len(want))
	}
	for i, w := range want {
		r := rows[i]
		if r.ClientId != w.client || r.Model != w.model || r.Requests != w.requests || r.Inferences != w.inferences || r.Errors != w.errors || r.ComputeNs != w.computeN {
			t.Errorf("row %d = %v, want %+v", i, r, w)
		}
		if timed := sum(r); timed != r.Requests {
			t.Errorf("row %d: %d requests timed, want %d", i, timed, r.Requests)
		}
	}
}

func sum(r *usagev1.UsageRow) (n uint64) {
	for _, c := range r.LatencyBuckets {
		n += c
	}
	return n
}
