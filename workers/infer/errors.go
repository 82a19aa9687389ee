package infer

import (
	"errors"
	"fmt"
)

// Code classifies an error the way both protocols need to report it.
type Code int

// Error codes, after Triton's TRITONSERVER_Error codes plus the ones the
// scheduler needs.
const (
	CodeInternal Code = iota
	CodeInvalidArgument
	CodeNotFound
	CodeUnavailable
	CodeUnimplemented
	CodeResourceExhausted
	CodeDeadlineExceeded
	CodeCancelled
	CodeAlreadyExists
	// CodeFailedPrecondition: the request cannot work in the state or
	// setting it arrived in (shared memory through the gateway).
	CodeFailedPrecondition
)

func (c Code) String() string {
	switch c {
	case CodeInvalidArgument:
		return "invalid argument"
	case CodeNotFound:
		return "not found"
	case CodeUnavailable:
		return "unavailable"
	case CodeUnimplemented:
		return "unimplemented"
	case CodeResourceExhausted:
		return "resource exhausted"
	case CodeDeadlineExceeded:
		return "deadline exceeded"
	case CodeCancelled:
		return "cancelled"
	case CodeAlreadyExists:
		return "already exists"
	case CodeFailedPrecondition:
		return "failed precondition"
	default:
		return "internal"
	}
}

// Error is an error with a Code. Msg is shown to clients as is, so it must
// name what was wrong and never carry secrets.
type Error struct {
	Code Code
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil && e.Msg == "" {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf makes an *Error; a %w verb in format is kept for errors.Is/As.
func Errorf(code Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// CodeOf returns the Code of the first *Error in err's chain, CodeInternal
// for other errors.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
