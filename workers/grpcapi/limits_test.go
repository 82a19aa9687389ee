package grpcapi

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/infer"
)

// fakeLimiter allows `allow` messages, then answers by its mode; a Spend of
// 0 (idle re-check) answers revoked once `revoked` is set.
type fakeLimiter struct {
	mu      sync.Mutex
	allow   int
	over    bool // past allow: OverLimit (else an error)
	revoked bool
	calls   []infer.StreamCredential
	counts  []uint32
}

func (f *fakeLimiter) Spend(_ context.Context, s infer.StreamCredential, n uint32) (infer.Verdict, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	f.counts = append(f.counts, n)
	switch {
	case f.revoked:
		return infer.Verdict{Revoked: true, Reason: "token revoked"}, nil
	case n == 0:
		return infer.Verdict{Allowed: true}, nil
	case f.allow > 0:
		f.allow--
		return infer.Verdict{Allowed: true, Limit: 5}, nil
	case f.over:
		return infer.Verdict{OverLimit: true, Limit: 5, Reset: time.Now().Add(500 * time.Millisecond)}, nil
	}
	return infer.Verdict{}, errors.New("helix-authz unreachable")
}

func gatewayContext(t *testing.T, expires time.Time) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	kv := []string{wire.HeaderClient, "c1", wire.HeaderCredential, "jti:t1"}
	if !expires.IsZero() {
		kv = append(kv, wire.HeaderExpires, strconv.FormatInt(expires.Unix(), 10))
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// TestStreamLimitPerMessage: every message of a gateway stream spends one
// unit with the stream's credential and the message's model; over the
// limit a message is answered RESOURCE_EXHAUSTED and the stream goes on;
// a limiter error answers that message UNAVAILABLE.
func TestStreamLimitPerMessage(t *testing.T) {
	for _, over := range []bool{true, false} {
		lim := &fakeLimiter{allow: 2, over: over}
		c := startServerOptions(t, newFakeService(), Options{Limiter: lim}).infer
		stream, err := c.ModelStreamInfer(gatewayContext(t, time.Time{}))
		if err != nil {
			t.Fatal(err)
		}
		want := "UNAVAILABLE: "
		if over {
			want = "RESOURCE_EXHAUSTED: "
		}
		// One at a time: a stream's messages run concurrently, and the
		// fake's verdicts go by the order of its calls.
		for i := range 4 {
			req := int32Request("simple", 2)
			req.Id = strconv.Itoa(i)
			if err := stream.Send(req); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			msg := resp.GetErrorMessage()
			if resp.GetInferResponse().GetId() != strconv.Itoa(i) || (i < 2 && msg != "") || (i >= 2 && !strings.HasPrefix(msg, want)) {
				t.Fatalf("over=%v response %d: id %q error %q", over, i, resp.GetInferResponse().GetId(), msg)
			}
		}
		_ = stream.CloseSend()
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last response: %v, want EOF (the stream stays good)", err)
		}
		lim.mu.Lock()
		if len(lim.calls) != 4 || lim.calls[0] != (infer.StreamCredential{Client: "c1", Model: "simple", Credential: "jti:t1"}) || lim.counts[0] != 1 {
			t.Fatalf("Spends %+v %v", lim.calls, lim.counts)
		}
		lim.mu.Unlock()
	}
}

// TestStreamLimitRevoked: a revoked credential ends the stream
// PERMISSION_DENIED, at a message or, on an idle stream, at the re-check.
func TestStreamLimitRevoked(t *testing.T) {
	lim := &fakeLimiter{allow: 100, revoked: true}
	c := startServerOptions(t, newFakeService(), Options{Limiter: lim}).infer
	stream, err := c.ModelStreamInfer(gatewayContext(t, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(int32Request("simple", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("revoked at a message: %v, want PermissionDenied", err)
	}

	idle := &fakeLimiter{allow: 100}
	c = startServerOptions(t, newFakeService(), Options{Limiter: idle, LimitRecheck: 20 * time.Millisecond}).infer
	stream, err = c.ModelStreamInfer(gatewayContext(t, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(int32Request("simple", 2)); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetErrorMessage() != "" {
		t.Fatalf("first message: %v %v", resp, err)
	}
	idle.mu.Lock()
	idle.revoked = true
	idle.mu.Unlock()
	if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("revoked on an idle stream: %v, want PermissionDenied", err)
	}
}

// TestStreamLimitExpiry: the stream ends UNAUTHENTICATED when its
// credential expires (x-helix-expires), idle or not.
func TestStreamLimitExpiry(t *testing.T) {
	lim := &fakeLimiter{allow: 100}
	c := startServerOptions(t, newFakeService(), Options{Limiter: lim}).infer
	start := time.Now()
	stream, err := c.ModelStreamInfer(gatewayContext(t, time.Now().Add(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(int32Request("simple", 2)); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetErrorMessage() != "" {
		t.Fatalf("before expiry: %v %v", resp, err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("at expiry: %v, want Unauthenticated", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("ended after %v", d)
	}
}

// TestStreamLimitNotGateway: a stream without the gateway's headers is not
// counted (as its usage is not); one with the client but no credential is
// refused, never run uncounted.
func TestStreamLimitNotGateway(t *testing.T) {
	lim := &fakeLimiter{}
	c := startServerOptions(t, newFakeService(), Options{Limiter: lim}).infer
	stream, err := c.ModelStreamInfer(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(int32Request("simple", 2)); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetErrorMessage() != "" {
		t.Fatalf("direct stream: %v %v", resp, err)
	}
	_ = stream.CloseSend()

	ctx := metadata.AppendToOutgoingContext(t.Context(), wire.HeaderClient, "c1")
	stream, err = c.ModelStreamInfer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no credential header: %v, want Unauthenticated", err)
	}
	lim.mu.Lock()
	defer lim.mu.Unlock()
	if len(lim.calls) != 0 {
		t.Fatalf("Spends %v, want none", lim.calls)
	}
}
