package models

import (
	"context"
	"log/slog"
	"testing"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
)

// A request that reaches a worker still loading its models, or one
// stopping, is UNAVAILABLE (retried on another worker by the gateway), not
// NOT_FOUND (final): a restarted worker listens before its models load.
func TestNotReadyIsUnavailable(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	be := &fakeBackend{}
	m, err := New(Config{
		Repository: root, ControlMode: ModeNone,
		Backends: map[string]backend.Backend{"onnxruntime": be},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := m.Infer(ctx, simpleRequest("simple")); infer.CodeOf(err) != infer.CodeUnavailable {
		t.Fatalf("before its models loaded: %v, want UNAVAILABLE", err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Infer(ctx, simpleRequest("simple")); err != nil {
		t.Fatalf("started: %v", err)
	}
	if _, err := m.Infer(ctx, simpleRequest("nope")); infer.CodeOf(err) != infer.CodeNotFound {
		t.Fatalf("unknown model once started: %v, want NOT_FOUND", err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Infer(ctx, simpleRequest("simple")); infer.CodeOf(err) != infer.CodeUnavailable {
		t.Fatalf("stopped: %v, want UNAVAILABLE", err)
	}
}
