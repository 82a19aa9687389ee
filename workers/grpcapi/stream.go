package grpcapi

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	pb "github.com/helixflow/helixflow/proto/inference"
)

// maxStreamInFlight bounds the requests of one stream that run at once;
// past it the stream stops reading, so HTTP/2 flow control slows the client.
const maxStreamInFlight = 256

// ModelStreamInfer serves a bidirectional stream. Requests run concurrently,
// but, as Triton does for non-decoupled models, each gets exactly one
// response and responses leave in request order. A failed request is
// answered with error_message set and the stream stays open. The stream ends
// with OK once the client half-closes and every response has been sent.
func (s *Server) ModelStreamInfer(stream grpc.BidiStreamingServer[pb.ModelInferRequest, pb.ModelStreamInferResponse]) error {
	ctx := stream.Context()
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
			go func() { slot <- s.streamResponse(ctx, req) }()
		}
	}()

	for slot := range pending {
		select {
		case resp := <-slot:
			if err := stream.Send(resp); err != nil {
				return err
			}
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	select {
	case err := <-recvErr:
		return err
	default:
		return nil
	}
}

// streamResponse runs one stream request; a failure becomes error_message
// with the request id, as Triton reports it.
func (s *Server) streamResponse(ctx context.Context, req *pb.ModelInferRequest) *pb.ModelStreamInferResponse {
	resp, err := s.infer(ctx, req)
	if err != nil {
		st := grpcStatus(err)
		s.logFailure(ctx, "ModelStreamInfer", st)
		return &pb.ModelStreamInferResponse{
			ErrorMessage:  st.Message(),
			InferResponse: &pb.ModelInferResponse{Id: req.GetId()},
		}
	}
	return &pb.ModelStreamInferResponse{InferResponse: resp}
}
