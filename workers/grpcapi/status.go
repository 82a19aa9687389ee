package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/workers/infer"
)

// grpcCodes maps infer codes to the gRPC codes Triton sends for the same
// TRITONSERVER_Error codes (src/grpc/grpc_utils.cc), plus the scheduler's.
var grpcCodes = map[infer.Code]codes.Code{
	infer.CodeInternal:           codes.Internal,
	infer.CodeInvalidArgument:    codes.InvalidArgument,
	infer.CodeNotFound:           codes.NotFound,
	infer.CodeUnavailable:        codes.Unavailable,
	infer.CodeUnimplemented:      codes.Unimplemented,
	infer.CodeResourceExhausted:  codes.ResourceExhausted,
	infer.CodeDeadlineExceeded:   codes.DeadlineExceeded,
	infer.CodeCancelled:          codes.Canceled,
	infer.CodeAlreadyExists:      codes.AlreadyExists,
	infer.CodeFailedPrecondition: codes.FailedPrecondition,
}

// grpcStatus turns an error from the service or the decoder into a gRPC
// status whose message is the *infer.Error message, as clients show it.
func grpcStatus(err error) *status.Status {
	var ie *infer.Error
	switch {
	case errors.As(err, &ie):
		code, ok := grpcCodes[ie.Code]
		if !ok {
			code = codes.Internal
		}
		return status.New(code, ie.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	return status.New(codes.Internal, err.Error())
}

func invalidf(format string, args ...any) *infer.Error {
	return infer.Errorf(infer.CodeInvalidArgument, format, args...)
}
