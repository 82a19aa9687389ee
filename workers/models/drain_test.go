package models

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/backend"
)

// An unload whose drain runs out still stops the version: the request that
// outlived the drain ends, and then its instances are closed, rather than
// left open for the life of the process.
func TestUnloadPastDrainClosesInstances(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	// Longer than a loaded machine can stall between the request starting
	// and the unload, so the request is still executing when the drain
	// times out.
	be := &fakeBackend{delay: 2 * time.Second}
	m, err := New(Config{
		Repository: root, ControlMode: ModeExplicit, StartupModels: []string{"simple"},
		Backends:     map[string]backend.Backend{"onnxruntime": be},
		DrainTimeout: 20 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })

	finished := make(chan error, 1)
	go func() {
		_, err := m.Infer(ctx, simpleRequest("simple"))
		finished <- err
	}()
	for be.executing.Load() == 0 { // the request is executing
		time.Sleep(time.Millisecond)
	}
	if err := m.UnloadModel(ctx, "simple", false); err == nil {
		t.Fatal("unload: no error, want the drain's timeout")
	}
	select {
	case <-finished: // answered or cancelled: either way it left
	case <-time.After(5 * time.Second):
		t.Fatal("the request outliving the drain never ended")
	}
	deadline := time.Now().Add(5 * time.Second)
	for be.live() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d backend instances still open after the unload", be.live())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
