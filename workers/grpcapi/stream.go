package grpcapi

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/wire"
	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/limits"
)

// maxStreamInFlight bounds the requests of one stream that run at once;
// past it the stream stops reading, so HTTP/2 flow control slows the client.
const maxStreamInFlight = 256

// paramFinalResponse and paramEmptyFinal are Triton's parameters of
// decoupled streams: a request that sets triton_enable_empty_final_response
// gets, after its last response, an empty one whose triton_final_response
// is true (its other responses carry it false).
const (
	paramEmptyFinal    = "triton_enable_empty_final_response"
	paramFinalResponse = "triton_final_response"
)

// ModelStreamInfer serves a bidirectional stream. Requests run concurrently.
// As Triton does for models that are not decoupled, each gets exactly one
// response and those responses leave in request order. A decoupled model's
// responses (infer.StreamService) leave as the model produces them. A failed
// request is answered with error_message set and the stream stays open.
// Requests that carry a sequence_id run one after the other per sequence
// (each waits for the previous one of its sequence on this stream), so the
// sequence batcher sees them in the order sent. The stream ends with OK once
// the client half-closes and every response has been sent; a client that
// goes away cancels the requests still running.
//
// With a Limiter, each message of a stream that came through the gateway
// is counted against its client's plan first (see limitStream): over the
// limit it is answered "RESOURCE_EXHAUSTED: ..." and the stream stays
// open; a revoked credential or client ends the stream PERMISSION_DENIED,
// and its expiry UNAUTHENTICATED.
func (s *Server) ModelStreamInfer(stream grpc.BidiStreamingServer[pb.ModelInferRequest, pb.ModelStreamInferResponse]) error {
	ctx, end := context.WithCancelCause(stream.Context())
	defer end(nil)
	rt, err := routingOf(ctx)
	if err != nil {
		return s.fail(ctx, "ModelStreamInfer", err)
	}
	var lim *streamLimit
	if !rt.Shadow { // a shadow copy spends no limit (infer.Routing)
		if lim, err = s.limitStream(ctx, end); err != nil {
			return err
		}
	}
	defer lim.stop()
	out := &streamWriter{stream: stream}
	// Registered after end: runs first, so no response is sent once the
	// handler has returned.
	defer out.close()
	// Each pending slot receives its request's in-order answer; the slots
	// queue in request order.
	pending := make(chan chan slotAnswer, maxStreamInFlight)
	running := make(chan struct{}, maxStreamInFlight)
	recvErr := make(chan error, 1)
	var (
		wg   sync.WaitGroup
		seqs sequenceOrder
	)

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
			select {
			case running <- struct{}{}:
			case <-ctx.Done():
				return
			}
			slot := make(chan slotAnswer, 1)
			select {
			case pending <- slot:
			case <-ctx.Done():
				return
			}
			prev, done := seqs.next(sequenceKey(req))
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-running }()
				defer done()
				if prev != nil {
					select {
					case <-prev:
					case <-ctx.Done():
						slot <- slotAnswer{}
						return
					}
				}
				s.streamRequest(ctx, lim, rt, req, slot, out)
			}()
		}
	}()

	for {
		var slot chan slotAnswer
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
		case a := <-slot:
			if a.end {
				// The stream was ended (revoked credential).
				return streamEnd(ctx)
			}
			if a.resp != nil {
				if err := out.send(a.resp); err != nil {
					return err
				}
			}
		case <-ctx.Done():
			return streamEnd(ctx)
		}
	}
	// Decoupled requests may still be sending.
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-ctx.Done():
		return streamEnd(ctx)
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

// slotAnswer is what a request leaves in its slot: the in-order response
// (nil: none, its responses went out as they came or there are none), or
// end when the stream must end.
type slotAnswer struct {
	resp *pb.ModelStreamInferResponse
	end  bool
}

// streamWriter serializes a stream's sends (the in-order loop and decoupled
// requests share it) and refuses them once the handler is returning.
type streamWriter struct {
	mu     sync.Mutex
	stream grpc.BidiStreamingServer[pb.ModelInferRequest, pb.ModelStreamInferResponse]
	closed bool
}

var errStreamClosed = status.Error(codes.Canceled, "the stream has ended")

func (w *streamWriter) send(resp *pb.ModelStreamInferResponse) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errStreamClosed
	}
	return w.stream.Send(resp)
}

func (w *streamWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// sequenceOrder chains the requests of each sequence within one stream.
type sequenceOrder struct {
	mu   sync.Mutex
	last map[string]chan struct{} // closed when that request has finished
}

// next registers a request of sequence key ("" for none) and returns the
// channel of the previous one to wait for (nil: none) and the function to
// call when this one has finished.
func (o *sequenceOrder) next(key string) (prev <-chan struct{}, done func()) {
	if key == "" {
		return nil, func() {}
	}
	mine := make(chan struct{})
	o.mu.Lock()
	if o.last == nil {
		o.last = make(map[string]chan struct{})
	}
	if p, ok := o.last[key]; ok {
		prev = p
	}
	o.last[key] = mine
	o.mu.Unlock()
	return prev, func() {
		close(mine)
		o.mu.Lock()
		if o.last[key] == mine {
			delete(o.last, key)
		}
		o.mu.Unlock()
	}
}

// sequenceKey is the request's sequence id as a map key, "" when it has
// none (or 0, which names no sequence).
func sequenceKey(req *pb.ModelInferRequest) string {
	switch v := req.GetParameters()["sequence_id"].GetParameterChoice().(type) {
	case *pb.InferParameter_Int64Param:
		if v.Int64Param != 0 {
			return "n" + strconv.FormatInt(v.Int64Param, 10)
		}
	case *pb.InferParameter_Uint64Param:
		if v.Uint64Param != 0 {
			return "n" + strconv.FormatUint(v.Uint64Param, 10)
		}
	case *pb.InferParameter_StringParam:
		if v.StringParam != "" {
			return "s" + v.StringParam
		}
	}
	return ""
}

// streamEnd is the status a stream ended with: the limiter's cause
// (PERMISSION_DENIED, UNAUTHENTICATED) or the client's context's.
func streamEnd(ctx context.Context) error {
	if st, ok := status.FromError(context.Cause(ctx)); ok && st.Code() != codes.OK {
		return st.Err()
	}
	return status.FromContextError(ctx.Err()).Err()
}

// streamRequest runs one stream request. Its one in-order answer goes to
// slot; a decoupled model's responses go straight to out as they come (the
// slot is then released empty at the first one). A failure becomes
// error_message with the request id, as Triton reports it.
func (s *Server) streamRequest(ctx context.Context, lim *streamLimit, rt infer.Routing, req *pb.ModelInferRequest, slot chan<- slotAnswer, out *streamWriter) {
	ctx, span := startSpan(ctx, spanModelStreamInfer)
	defer span.End()
	if msg, ok := lim.spend(ctx, req.GetModelName()); !ok {
		slot <- slotAnswer{end: true}
		return
	} else if msg != "" {
		slot <- slotAnswer{resp: &pb.ModelStreamInferResponse{ErrorMessage: msg, InferResponse: &pb.ModelInferResponse{Id: req.GetId()}}}
		return
	}
	emptyFinal := req.GetParameters()[paramEmptyFinal].GetBoolParam()
	released := false
	// answer sends resp in order while the slot is held, straight out once
	// it was released.
	answer := func(resp *pb.ModelStreamInferResponse) error {
		if released {
			if resp == nil {
				return nil
			}
			return out.send(resp)
		}
		released = true
		slot <- slotAnswer{resp: resp}
		return nil
	}
	send := func(ireq *infer.Request, resp *infer.Response, final bool, encode func() (*pb.ModelInferResponse, error)) error {
		var msg *pb.ModelStreamInferResponse
		if !final || len(resp.Outputs) > 0 {
			t := infer.EncodeStart(ctx)
			enc, err := encode()
			infer.EncodeDone(ctx, t)
			if err != nil {
				return infer.Errorf(infer.CodeInternal, "encoding a response: %w", err)
			}
			if emptyFinal {
				setFinal(enc, final)
			}
			msg = &pb.ModelStreamInferResponse{InferResponse: enc}
		} else if emptyFinal {
			enc := &pb.ModelInferResponse{ModelName: resp.Model, ModelVersion: resp.Version, Id: resp.ID}
			if enc.ModelName == "" {
				enc.ModelName = ireq.Model
			}
			if enc.Id == "" {
				enc.Id = ireq.ID
			}
			setFinal(enc, true)
			msg = &pb.ModelStreamInferResponse{InferResponse: enc}
		}
		if !final && !released {
			// A decoupled model: this request's responses no longer wait
			// for the ones before it.
			_ = answer(nil)
		}
		return answer(msg)
	}
	if err := s.inferStream(ctx, rt, req, send); err != nil {
		infer.SpanError(span, err)
		st := grpcStatus(err)
		s.logFailure(ctx, "ModelStreamInfer", st)
		_ = answer(&pb.ModelStreamInferResponse{ErrorMessage: st.Message(), InferResponse: &pb.ModelInferResponse{Id: req.GetId()}})
	}
	if !released {
		slot <- slotAnswer{}
	}
}

func setFinal(resp *pb.ModelInferResponse, final bool) {
	if resp.Parameters == nil {
		resp.Parameters = make(map[string]*pb.InferParameter, 1)
	}
	resp.Parameters[paramFinalResponse] = &pb.InferParameter{ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: final}}
}

// inferStream decodes and runs one stream request, calling send for each
// response (infer.StreamService where the service has it, else one final
// Infer answer), and counts its usage like ModelInfer.
func (s *Server) inferStream(ctx context.Context, rt infer.Routing, req *pb.ModelInferRequest, send streamSend) error {
	authorized := metadata.ValueFromIncomingContext(ctx, wire.HeaderModel)
	var client string
	if s.usage != nil && !rt.Shadow {
		if c := metadata.ValueFromIncomingContext(ctx, wire.HeaderClient); len(c) == 1 {
			client = c[0]
		}
	}
	start := time.Now()
	ireq, err := s.runStream(ctx, authorized, rt, req, send)
	if client != "" {
		infer.RecordUsage(s.usage, client, authorized, req.GetModelName(), ireq, err != nil, start)
	}
	return err
}

// streamSend takes one response of a stream request; encode builds its
// message (writing outputs asked for in shared memory there).
type streamSend func(ireq *infer.Request, resp *infer.Response, final bool, encode func() (*pb.ModelInferResponse, error)) error

// runStream is run for a stream request; ireq is nil when decoding failed.
func (s *Server) runStream(ctx context.Context, authorized []string, rt infer.Routing, req *pb.ModelInferRequest, send streamSend) (ireq *infer.Request, _ error) {
	if err := infer.CheckGatewayModel(authorized, req.GetModelName()); err != nil {
		return nil, err
	}
	infer.SetModel(ctx, req.GetModelName())
	ireq, shmOut, err := decodeRequest(req, s.sharedMemory(ctx))
	if err != nil {
		return nil, err
	}
	ireq.Version = rt.VersionFor(ireq.Version)
	defer shmOut.Release()
	deliver := func(resp *infer.Response, final bool) error {
		return send(ireq, resp, final, func() (*pb.ModelInferResponse, error) { return encodeResponse(ireq, resp, shmOut) })
	}
	if ss, ok := s.svc.(infer.StreamService); ok {
		return ireq, ss.InferStream(ctx, ireq, deliver)
	}
	resp, err := s.svc.Infer(ctx, ireq)
	if err != nil {
		return ireq, err
	}
	return ireq, deliver(resp, true)
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
