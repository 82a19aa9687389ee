package grpcapi

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/limits"
)

// maxStreamInFlight bounds the requests of one stream that run at once;
// past it the stream stops reading, so HTTP/2 flow control slows the client.
const maxStreamInFlight = 256

// ModelStreamInfer serves a bidirectional stream. Requests run concurrently,
// but, as Triton does for non-decoupled models, each gets exactly one
// response and responses leave in request order. A failed request is
// answered with error_message set and the stream stays open. The stream ends
// with OK once the client half-closes and every response has been sent.
//
// With a Limiter, each message of a stream that came through the gateway
// is counted against its client's plan first (see limitStream): over the
// limit it is answered "RESOURCE_EXHAUSTED: ..." and the stream stays
// open; a revoked credential or client ends the stream PERMISSION_DENIED,
// and its expiry UNAUTHENTICATED.
func (s *Server) ModelStreamInfer(stream grpc.BidiStreamingServer[pb.ModelInferRequest, pb.ModelStreamInferResponse]) error {
	ctx, end := context.WithCancelCause(stream.Context())
	defer end(nil)
	lim, err := s.limitStream(ctx, end)
	if err != nil {
		return err
	}
	defer lim.stop()
	// Each pending slot receives its request's response; the slots queue
	// in request order.
	pending := make(chan chan *pb.ModelStreamInferResponse, maxStreamInFlight)
	recvErr := make(chan error, 1)

	go func() {
		defer close(pending)
		for {
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr <- err
				}
				return
			}
			slot := make(chan *pb.ModelStreamInferResponse, 1)
			select {
			case pending <- slot:
			case <-ctx.Done():
				return
			}
			go func() { slot <- s.streamResponse(ctx, lim, req) }()
		}
	}()

	for {
		var slot chan *pb.ModelStreamInferResponse
		select {
		case slot = <-pending:
		case <-ctx.Done():
			// Also while idle: the limiter ends a stream whose credential
			// expired or was revoked.
			return streamEnd(ctx)
		}
		if slot == nil {
			break // pending closed: the client half-closed
		}
		select {
		case resp := <-slot:
			if resp == nil {
				// The stream was ended (revoked credential).
				return streamEnd(ctx)
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		case <-ctx.Done():
			return streamEnd(ctx)
		}
	}
	select {
	case err := <-recvErr:
		return err
	default:
		if ctx.Err() != nil {
			return streamEnd(ctx)
		}
		return nil
	}
}

// streamEnd is the status a stream ended with: the limiter's cause
// (PERMISSION_DENIED, UNAUTHENTICATED) or the client's context's.
func streamEnd(ctx context.Context) error {
	if st, ok := status.FromError(context.Cause(ctx)); ok && st.Code() != codes.OK {
		return st.Err()
	}
	return status.FromContextError(ctx.Err()).Err()
}

// streamResponse runs one stream request; a failure becomes error_message
// with the request id, as Triton reports it. It returns nil when the
// stream must end (its credential was revoked).
func (s *Server) streamResponse(ctx context.Context, lim *streamLimit, req *pb.ModelInferRequest) *pb.ModelStreamInferResponse {
	ctx, span := startSpan(ctx, spanModelStreamInfer)
	defer span.End()
	if msg, ok := lim.spend(ctx, req.GetModelName()); !ok {
		return nil
	} else if msg != "" {
		return &pb.ModelStreamInferResponse{ErrorMessage: msg, InferResponse: &pb.ModelInferResponse{Id: req.GetId()}}
	}
	resp, err := s.infer(ctx, req)
	if err != nil {
		infer.SpanError(span, err)
		st := grpcStatus(err)
		s.logFailure(ctx, "ModelStreamInfer", st)
		return &pb.ModelStreamInferResponse{
			ErrorMessage:  st.Message(),
			InferResponse: &pb.ModelInferResponse{Id: req.GetId()},
		}
	}
	return &pb.ModelStreamInferResponse{InferResponse: resp}
}

// streamLimit counts one stream's messages (nil: not counted: no Limiter,
// or a stream that did not come through the gateway).
type streamLimit struct {
	s    *Server
	cred infer.StreamCredential
	end  context.CancelCauseFunc
	// spent is when a message last asked (unix nanoseconds): an idle
	// stream's credential is re-checked only when none did recently.
	spent atomic.Int64
	done  chan struct{}
}

// limitStream reads the stream's credential from the gateway's metadata
// and starts its expiry timer and idle re-checks.
func (s *Server) limitStream(ctx context.Context, end context.CancelCauseFunc) (*streamLimit, error) {
	if s.limiter == nil {
		return nil, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	cred, ok, err := limits.Credential(func(name string) string {
		if v := md.Get(name); len(v) == 1 {
			return v[0]
		}
		return ""
	})
	if !ok {
		return nil, nil
	}
	if err != nil {
		// The gateway sets these headers; without them the stream's
		// messages could not be counted, and none runs uncounted.
		return nil, s.fail(ctx, "ModelStreamInfer", status.Errorf(codes.Unauthenticated, "stream credential: %v", err))
	}
	l := &streamLimit{s: s, cred: cred, end: end, done: make(chan struct{})}
	l.spent.Store(time.Now().UnixNano())
	go l.watch(ctx)
	return l, nil
}

func (l *streamLimit) stop() {
	if l != nil {
		close(l.done)
	}
}

// watch ends the stream when its credential expires, and re-checks an idle
// stream's credential every recheck interval, so that a revoked client's
// stream ends within it.
func (l *streamLimit) watch(ctx context.Context) {
	var expired <-chan time.Time
	if !l.cred.Expires.IsZero() {
		t := time.NewTimer(time.Until(l.cred.Expires))
		defer t.Stop()
		expired = t.C
	}
	tick := time.NewTicker(l.s.recheck)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-ctx.Done():
			return
		case <-expired:
			l.end(status.Error(codes.Unauthenticated, "the stream's credential expired"))
			return
		case <-tick.C:
			if time.Since(time.Unix(0, l.spent.Load())) < l.s.recheck {
				continue
			}
			v, err := l.s.limiter.Spend(ctx, l.cred, 0)
			if err == nil && v.Revoked {
				l.end(status.Errorf(codes.PermissionDenied, "credential no longer valid: %s", v.Reason))
				return
			}
		}
	}
}

// spend counts one message for model. ok is false when the stream must
// end; msg, when set, is the message's error answer (over the limit, or no
// verdict could be had).
func (l *streamLimit) spend(ctx context.Context, model string) (msg string, ok bool) {
	if l == nil {
		return "", true
	}
	if !l.cred.Expires.IsZero() && !time.Now().Before(l.cred.Expires) {
		l.end(status.Error(codes.Unauthenticated, "the stream's credential expired"))
		return "", false
	}
	if l.cred.Model != "" && model != l.cred.Model {
		// The infer call refuses it (the gateway authorized one model);
		// counting it would name a model the client may not reach.
		return "", true
	}
	l.spent.Store(time.Now().UnixNano())
	c := l.cred
	c.Model = model
	v, err := l.s.limiter.Spend(ctx, c, 1)
	switch {
	case err != nil:
		l.s.log.WarnContext(ctx, "stream message refused: plan limit unavailable", "client", c.Client, "err", err)
		return "UNAVAILABLE: the plan's limit could not be checked; retry", true
	case v.Revoked:
		l.end(status.Errorf(codes.PermissionDenied, "credential no longer valid: %s", v.Reason))
		return "", false
	case v.OverLimit:
		return "RESOURCE_EXHAUSTED: over the plan's rate limit" + retryIn(v.Reset), true
	case !v.Allowed:
		return "UNAVAILABLE: the plan's limit gave no verdict", true
	}
	return "", true
}

// retryIn says when the window resets (", retry in 0.4s"), if known.
func retryIn(reset time.Time) string {
	if reset.IsZero() {
		return ""
	}
	d := max(time.Until(reset), 0).Round(100 * time.Millisecond)
	return ", retry in " + d.String()
}
