package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/pki"
)

func TestClientOverMTLS(t *testing.T) {
	c := newCerts(t)
	xds := startXDS(t, c, pki.XDSServer)
	xds.set(sampleModels(), nil)
	cl := dial(t, c, xds, authzClient)
	ctx := context.Background()

	models, err := cl.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(models)
	want := `[{"name":"densenet","versions":["1"],"ready":false,"workers":2,"ready_workers":0,"platform":"","max_batch_size":0,"inputs":[],"outputs":[],"config":null},` +
		`{"name":"simple","versions":["1","2"],"ready":true,"workers":2,"ready_workers":1,"platform":"onnxruntime_onnx","max_batch_size":8,` +
		`"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[16]}],"outputs":[{"name":"OUTPUT0","datatype":"FP32","shape":[-1]}],"config":{"name":"simple","max_batch_size":8}},` +
		`{"name":"text","versions":[],"ready":true,"workers":1,"ready_workers":1,"platform":"","max_batch_size":0,"inputs":[],"outputs":[],"config":null}]`
	if string(got) != want {
		t.Fatalf("models:\n got %s\nwant %s", got, want)
	}

	t.Run("cached for CacheTTL, then asked again", func(t *testing.T) {
		now := time.Now()
		cl.now = func() time.Time { return now }
		cl.models = nil
		calls := xds.calls.Load()
		for range 5 {
			if _, err := cl.Models(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n := xds.calls.Load() - calls; n != 1 {
			t.Fatalf("%d calls within the TTL, want 1", n)
		}
		xds.set(sampleModels()[:1], nil)
		now = now.Add(CacheTTL)
		models, err := cl.Models(ctx)
		if err != nil || len(models) != 1 || xds.calls.Load()-calls != 2 {
			t.Fatalf("after the TTL: %d models, %v, %d calls", len(models), err, xds.calls.Load()-calls)
		}
	})

	t.Run("concurrent callers share one call", func(t *testing.T) {
		cl.models = nil
		block := make(chan struct{})
		xds.mu.Lock()
		xds.block = block
		xds.mu.Unlock()
		calls := xds.calls.Load()
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for range 50 {
			wg.Go(func() {
				_, err := cl.Models(ctx)
				errs <- err
			})
		}
		// Let them all queue behind the first call, then answer it.
		deadline := time.Now().Add(5 * time.Second)
		for xds.calls.Load() == calls && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		xds.mu.Lock()
		xds.block = nil
		xds.mu.Unlock()
		close(block)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := xds.calls.Load() - calls; n != 1 {
			t.Fatalf("%d calls for 50 concurrent callers, want 1", n)
		}
	})

	t.Run("a caller that gives up does not fail the others", func(t *testing.T) {
		cl.models = nil
		block := make(chan struct{})
		xds.mu.Lock()
		xds.block = block
		xds.mu.Unlock()
		gone, cancel := context.WithCancel(ctx)
		first := make(chan error, 1)
		go func() { _, err := cl.Models(gone); first <- err }()
		time.Sleep(20 * time.Millisecond)
		second := make(chan error, 1)
		go func() { _, err := cl.Models(ctx); second <- err }()
		cancel()
		if err := <-first; !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled caller: %v", err)
		}
		xds.mu.Lock()
		xds.block = nil
		xds.mu.Unlock()
		close(block)
		if err := <-second; err != nil {
			t.Fatalf("other caller: %v", err)
		}
	})

	t.Run("helix-xds errors are ErrUnavailable and not cached", func(t *testing.T) {
		cl.models = nil
		xds.set(nil, status.Error(codes.Internal, "boom"))
		if _, err := cl.Models(ctx); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		xds.set(sampleModels(), nil)
		if m, err := cl.Models(ctx); err != nil || len(m) != 3 {
			t.Fatalf("after recovery: %d, %v", len(m), err)
		}
	})
}

// TestClientIdentities: helix-xds admits helix-authz's identity only, and
// helix-authz talks only to helix-xds's identity, though every certificate
// comes from the same CA.
func TestClientIdentities(t *testing.T) {
	c := newCerts(t)
	tests := []struct {
		name, server, client string
		ok                   bool
	}{
		{"helix-authz to helix-xds", pki.XDSServer, authzClient, true},
		{"Envoy's identity is refused by helix-xds", pki.XDSServer, pki.EnvoyXDSClient, false},
		{"a server that is not helix-xds is refused", authzAsXDS, authzClient, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			xds := startXDS(t, c, tt.server)
			xds.set(sampleModels(), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := dial(t, c, xds, tt.client).Models(ctx)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestDialRefusesBadFiles(t *testing.T) {
	c := newCerts(t)
	cert, key := c.files(authzClient)
	for name, cfg := range map[string]DialConfig{
		"no address":      {CAFile: c.ca(), CertFile: cert, KeyFile: key},
		"no CA":           {Address: "127.0.0.1:1", CertFile: cert, KeyFile: key},
		"CA missing":      {Address: "127.0.0.1:1", CAFile: key + ".missing", CertFile: cert, KeyFile: key},
		"key of the CA":   {Address: "127.0.0.1:1", CAFile: c.ca(), CertFile: cert, KeyFile: c.dir + "/ca.key"},
		"cert is the key": {Address: "127.0.0.1:1", CAFile: cert, CertFile: key, KeyFile: key},
	} {
		if _, err := Dial(cfg); err == nil {
			t.Errorf("%s: Dial accepted it", name)
		}
	}
}
