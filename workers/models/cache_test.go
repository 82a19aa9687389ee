package models

import (
	"bytes"
	"context"
	"testing"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/cache"
	"github.com/helixflow/helixflow/workers/infer"
)

func newCachingManager(t *testing.T, root string, c *cache.Cache, be *recordingBackend) *Manager {
	t.Helper()
	m, err := New(Config{
		Repository: root, ControlMode: ModeExplicit, StartupModels: []string{"*"},
		Backends: map[string]backend.Backend{"onnxruntime": be}, ResponseCache: c,
		Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestResponseCache(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "cached", simpleConfig+"response_cache { enable: true }", 1)
	writeModel(t, root, "plain", simpleConfig, 1)
	c := cache.New(1 << 20)
	be := &recordingBackend{fakeBackend: &fakeBackend{}}
	m := newCachingManager(t, root, c, be)
	ctx := context.Background()

	first, err := m.Infer(ctx, simpleRequest("cached"))
	if err != nil {
		t.Fatal(err)
	}
	first.Outputs[0].Data[0] = 99 // a client's change does not reach the cache
	req := simpleRequest("cached")
	req.ID = "second"
	second, err := m.Infer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(be.executions()) != 1 {
		t.Fatalf("%d executions: the second request did not hit the cache", len(be.executions()))
	}
	if second.ID != "second" || second.Version != "1" || second.Outputs[0].Name != "OUTPUT0" ||
		!bytes.Equal(second.Outputs[0].Data, int32s(1002, 1003, 1004, 1005)) || !bytes.Equal(second.Outputs[1].Data, int32s(0, 1, 2, 3)) {
		t.Fatalf("cached response %+v", second)
	}
	if req.Usage.Rows != 1 || req.Usage.Compute != 0 {
		t.Fatalf("usage of a hit: %+v", req.Usage)
	}

	// What changes the answer changes the key.
	variants := map[string]func(*infer.Request){
		"input data": func(r *infer.Request) { r.Inputs[1].Data = int32s(2, 2, 2, 2) },
		"batch":      func(r *infer.Request) { *r = *batchOf2(r) },
		"outputs":    func(r *infer.Request) { r.Outputs = []infer.RequestedOutput{{Name: "OUTPUT1"}} },
		"classified": func(r *infer.Request) {
			r.Outputs = []infer.RequestedOutput{{Name: "OUTPUT1", Parameters: map[string]any{"classification": int64(2)}}}
		},
		"input order": func(r *infer.Request) { r.Inputs[0], r.Inputs[1] = r.Inputs[1], r.Inputs[0] },
	}
	misses := 1
	for name, mutate := range variants {
		req := simpleRequest("cached")
		mutate(req)
		before := len(be.executions())
		resp, err := m.Infer(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name != "input order" {
			// Inputs are hashed in the model's order: the same request
			// sent in another order hits.
			misses++
			if len(be.executions()) != before+1 {
				t.Fatalf("%s: answered from the cache", name)
			}
		} else if len(be.executions()) != before {
			t.Fatalf("%s: missed the cache", name)
		}
		if name == "outputs" && (len(resp.Outputs) != 1 || resp.Outputs[0].Name != "OUTPUT1") {
			t.Fatalf("outputs: %+v", resp.Outputs)
		}
	}

	st, err := m.ModelStatistics(ctx, "cached", "1")
	if err != nil {
		t.Fatal(err)
	}
	s := st[0].InferenceStats
	hits := 2 // second, input order
	if s.CacheHit.Count != uint64(hits) || s.CacheMiss.Count != uint64(misses) || s.Success.Count != uint64(hits+misses) || st[0].ExecutionCount != uint64(misses) {
		t.Fatalf("statistics: hits %v misses %v success %v executions %d", s.CacheHit, s.CacheMiss, s.Success, st[0].ExecutionCount)
	}

	// A model that does not enable the cache never uses it.
	for range 2 {
		if _, err := m.Infer(ctx, simpleRequest("plain")); err != nil {
			t.Fatal(err)
		}
	}
	st, _ = m.ModelStatistics(ctx, "plain", "1")
	if st[0].InferenceStats.CacheHit.Count != 0 || st[0].InferenceStats.CacheMiss.Count != 0 || st[0].ExecutionCount != 2 {
		t.Fatalf("plain model statistics %v", st[0])
	}

	// A reload of the same version starts cold; the old answers are gone.
	entries := c.Len()
	if err := m.LoadModel(ctx, "cached", infer.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 0 || entries == 0 {
		t.Fatalf("cache entries %d before the reload, %d after", entries, c.Len())
	}
	before := len(be.executions())
	if _, err := m.Infer(ctx, simpleRequest("cached")); err != nil || len(be.executions()) != before+1 {
		t.Fatalf("first request after the reload: %v, executions %d -> %d", err, before, len(be.executions()))
	}
}

func batchOf2(r *infer.Request) *infer.Request {
	for i := range r.Inputs {
		r.Inputs[i].Shape = []int64{2, 4}
		r.Inputs[i].Data = append(r.Inputs[i].Data, r.Inputs[i].Data...)
	}
	return r
}

// A model that enables response_cache on a worker without one serves,
// uncached.
func TestResponseCacheOffInWorker(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "cached", simpleConfig+"response_cache { enable: true }", 1)
	be := &recordingBackend{fakeBackend: &fakeBackend{}}
	m := newCachingManager(t, root, nil, be)
	for range 2 {
		if _, err := m.Infer(context.Background(), simpleRequest("cached")); err != nil {
			t.Fatal(err)
		}
	}
	if len(be.executions()) != 2 {
		t.Fatalf("%d executions, want 2", len(be.executions()))
	}
}
