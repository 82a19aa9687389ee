package redistest

import (
	"context"
	"testing"
)

func TestStartStopStart(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	if err := ping(ctx, s.Addr); err != nil {
		t.Fatalf("running server: %v", err)
	}
	s.Stop()
	if err := ping(ctx, s.Addr); err == nil {
		t.Fatal("stopped server still answers")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, s.Addr); err != nil {
		t.Fatalf("restarted server: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("second Start of a running server succeeded")
	}
}
