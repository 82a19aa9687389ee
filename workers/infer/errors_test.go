package infer

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestErrorf(t *testing.T) {
	cause := context.DeadlineExceeded
	err := Errorf(CodeDeadlineExceeded, "model 'm': %w", cause)
	if err.Error() != "model 'm': context deadline exceeded" || err.Code != CodeDeadlineExceeded {
		t.Fatalf("Errorf = %q (code %v)", err.Error(), err.Code)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("the %w cause is lost")
	}
	// Without %w there is nothing to unwrap.
	if plain := Errorf(CodeNotFound, "model %q", "m"); plain.Unwrap() != nil {
		t.Fatalf("Unwrap = %v", plain.Unwrap())
	}
	// An Error with only a cause shows the cause.
	if got := (&Error{Code: CodeInternal, Err: cause}).Error(); got != cause.Error() {
		t.Fatalf("Error() = %q", got)
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		want Code
	}{
		{Errorf(CodeNotFound, "x"), CodeNotFound},
		{fmt.Errorf("wrapped: %w", Errorf(CodeResourceExhausted, "queue full")), CodeResourceExhausted},
		{errors.New("plain"), CodeInternal},
		{nil, CodeInternal},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.want {
			t.Errorf("CodeOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestCodeString(t *testing.T) {
	want := map[Code]string{
		CodeInternal: "internal", CodeInvalidArgument: "invalid argument", CodeNotFound: "not found",
		CodeUnavailable: "unavailable", CodeUnimplemented: "unimplemented", CodeResourceExhausted: "resource exhausted",
		CodeDeadlineExceeded: "deadline exceeded", CodeCancelled: "cancelled", CodeAlreadyExists: "already exists",
		Code(99): "internal",
	}
	for c, s := range want {
		if c.String() != s {
			t.Errorf("Code(%d).String() = %q, want %q", int(c), c.String(), s)
		}
	}
}
