package builder

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/translate"
)

// workers is a Source whose table the test sets.
type workers struct {
	mu      sync.Mutex
	table   []registry.Worker
	changed chan struct{}
}

func (w *workers) Snapshot() []registry.Worker {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.table
}

// Subscribe forwards set's signals until ctx ends. Like the registry's, the
// channel is never closed: Run must stop on ctx alone.
func (w *workers) Subscribe(ctx context.Context) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.changed:
				select {
				case out <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

func (w *workers) set(ws ...registry.Worker) {
	w.mu.Lock()
	w.table = ws
	w.mu.Unlock()
	w.changed <- struct{}{}
}

// publisher records the pool names of each publication.
type publisher struct{ got chan []string }

func (p *publisher) Publish(_ context.Context, res *translate.Resources) error {
	var clusters []string
	for _, c := range res.Clusters {
		clusters = append(clusters, cache.GetResourceName(c))
	}
	p.got <- clusters
	return nil
}

const gatewayYAML = "listener: {address: 127.0.0.1, port: 8443}\nauthz: {address: '127.0.0.1:9001'}\n"

func writeConfig(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func worker(models ...string) registry.Worker {
	w := registry.Worker{ID: "w", Address: "127.0.0.1", GRPCPort: 8001, Ready: true}
	for _, m := range models {
		w.Models = append(w.Models, registry.Model{Name: m, Versions: []string{"1"}, Ready: true})
	}
	return w
}

func TestNewRefusesABadStart(t *testing.T) {
	src := &workers{changed: make(chan struct{})}
	for name, c := range map[string]Config{
		"no such file": {ConfigPath: filepath.Join(t.TempDir(), "none.yaml"), Workers: src, Publisher: &publisher{}},
		"bad file":     {ConfigPath: writeConfig(t, "listener: [\n"), Workers: src, Publisher: &publisher{}},
	} {
		if _, err := New(t.Context(), c); err == nil || !strings.HasPrefix(err.Error(), "gateway config: ") {
			t.Errorf("%s: New = %v, want a gateway config error", name, err)
		}
	}
}

func TestBuilderPublishes(t *testing.T) {
	for _, grace := range []time.Duration{0, 200 * time.Millisecond} {
		t.Run("grace "+grace.String(), func(t *testing.T) {
			src := &workers{changed: make(chan struct{})}
			pub := &publisher{got: make(chan []string, 10)}
			start := time.Now()
			b, err := New(t.Context(), Config{ConfigPath: writeConfig(t, gatewayYAML), Workers: src, Publisher: pub,
				StartupGrace: grace, Registerer: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- b.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != context.Canceled {
					t.Errorf("Run = %v, want context.Canceled", err)
				}
			})
			next := func() []string {
				t.Helper()
				select {
				case got := <-pub.got:
					return got
				case <-time.After(10 * time.Second):
					t.Fatal("nothing published")
					return nil
				}
			}
			next() // the start: no workers yet
			if since := time.Since(start); since < grace {
				t.Fatalf("published after %v, within the startup grace of %v", since, grace)
			}
			src.set(worker("mlp"))
			for {
				got := next()
				if slices.Contains(got, translate.GRPCCluster("mlp")) {
					break
				}
			}
		})
	}
}
