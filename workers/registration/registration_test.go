package registration_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/workers/registration"
	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/registry/registrytest"
)

var quiet = slog.New(slog.DiscardHandler)

// worker is the state a test worker reports.
type worker struct {
	mu     sync.Mutex
	models []registration.Model
	ready  bool
	err    error
}

func (w *worker) set(ready bool, models ...registration.Model) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ready, w.models = ready, models
}

func (w *worker) Models(context.Context) ([]registration.Model, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.models, w.err
}

func (w *worker) Ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ready
}

func startServer(t *testing.T, opts registrytest.Options) *registrytest.Server {
	t.Helper()
	if opts.Config.Logger == nil {
		opts.Config.Logger = quiet
	}
	if opts.Config.TTL == 0 {
		opts.Config.TTL = time.Second
	}
	opts.Config.Identify = registry.WorkerIdentity
	return registrytest.Start(t, opts)
}

// run starts registration.Run and returns a function that stops it and
// waits for it to return.
func run(t *testing.T, cfg registration.Config) (stop func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- registration.Run(ctx, cfg) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func config(srv *registrytest.Server, w *worker) registration.Config {
	return registration.Config{
		XDSAddress: srv.Addr,
		TLS:        srv.PKI.Client,
		Address:    "127.0.0.1",
		GRPCPort:   18001,
		HTTPPort:   18000,
		Models:     w.Models,
		Ready:      w.Ready,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	}
}

// waitFor polls the registry until cond holds for its snapshot.
func waitFor(t *testing.T, reg *registry.Registry, what string, within time.Duration, cond func([]registry.Worker) bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		snap := reg.Snapshot()
		if cond(snap) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; registry has %+v", what, within, snap)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func serves(id, model string) func([]registry.Worker) bool {
	return func(ws []registry.Worker) bool {
		return len(ws) == 1 && ws[0].ID == id && ws[0].Serves(model)
	}
}

func TestRegistersAndDeregisters(t *testing.T) {
	srv := startServer(t, registrytest.Options{})
	w := &worker{}
	w.set(true, registration.Model{Name: "simple", Versions: []string{"2", "10", "1"}, Ready: true})
	stop := run(t, config(srv, w))

	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	id := host + ":18001"
	waitFor(t, srv.Registry, "registration", 5*time.Second, serves(id, "simple"))
	got := srv.Registry.Snapshot()[0]
	if got.Address != "127.0.0.1" || got.GRPCPort != 18001 || got.HTTPPort != 18000 || !got.Ready ||
		len(got.Models[0].Versions) != 3 || got.Models[0].Versions[2] != "10" {
		t.Fatalf("registered %+v", got)
	}

	// Renewals keep it there past several TTLs.
	time.Sleep(2500 * time.Millisecond)
	if !serves(id, "simple")(srv.Registry.Snapshot()) {
		t.Fatal("worker dropped while renewing")
	}

	stop()
	// Deregistration is done when Run returns, not left to the lease.
	if snap := srv.Registry.Snapshot(); len(snap) != 0 {
		t.Fatalf("after stop: %+v", snap)
	}
}

func TestChangePropagatesOnRenewal(t *testing.T) {
	srv := startServer(t, registrytest.Options{})
	w := &worker{}
	w.set(false)
	cfg := config(srv, w)
	cfg.WorkerID = "w1"
	cfg.CheckInterval = -1 // only renewals carry changes
	cfg.Interval = 200 * time.Millisecond
	run(t, cfg)
	waitFor(t, srv.Registry, "registration", 5*time.Second, func(ws []registry.Worker) bool { return len(ws) == 1 && !ws[0].Ready })

	w.set(true, registration.Model{Name: "simple", Versions: []string{"1"}, Ready: true})
	waitFor(t, srv.Registry, "model added", 2*time.Second, serves("w1", "simple"))

	w.set(true, registration.Model{Name: "simple", Versions: []string{"1"}, Ready: false})
	waitFor(t, srv.Registry, "model unready", 2*time.Second, func(ws []registry.Worker) bool { return len(ws) == 1 && !ws[0].Serves("simple") })

	// A failing Models keeps the lease and the models last sent.
	w.set(true, registration.Model{Name: "other", Versions: []string{"1"}, Ready: true})
	waitFor(t, srv.Registry, "other model", 2*time.Second, serves("w1", "other"))
	w.mu.Lock()
	w.err = errors.New("repository unreadable")
	w.mu.Unlock()
	time.Sleep(1500 * time.Millisecond) // beyond the 1s TTL
	if !serves("w1", "other")(srv.Registry.Snapshot()) {
		t.Fatalf("lease or models lost while Models failed: %+v", srv.Registry.Snapshot())
	}
}

// Between renewals, a change is sent when the poll sees it or Changed fires.
func TestChangeSentAtOnce(t *testing.T) {
	srv := startServer(t, registrytest.Options{Config: registry.Config{TTL: time.Minute}})
	w := &worker{}
	w.set(true)

	cfg := config(srv, w)
	cfg.WorkerID = "polled"
	cfg.CheckInterval = 20 * time.Millisecond
	run(t, cfg)
	waitFor(t, srv.Registry, "registration", 5*time.Second, func(ws []registry.Worker) bool { return len(ws) == 1 })
	w.set(true, registration.Model{Name: "simple", Versions: []string{"1"}, Ready: true})
	// The renewal interval is 20s; only the poll can make this in time.
	waitFor(t, srv.Registry, "polled change", 2*time.Second, serves("polled", "simple"))

	srv2 := startServer(t, registrytest.Options{Config: registry.Config{TTL: time.Minute}})
	w2 := &worker{}
	w2.set(true)
	changed := make(chan struct{}, 1)
	cfg = config(srv2, w2)
	cfg.WorkerID = "notified"
	cfg.CheckInterval = -1
	cfg.Changed = changed
	run(t, cfg)
	waitFor(t, srv2.Registry, "registration", 5*time.Second, func(ws []registry.Worker) bool { return len(ws) == 1 })
	w2.set(true, registration.Model{Name: "simple", Versions: []string{"1"}, Ready: true})
	time.Sleep(100 * time.Millisecond)
	if serves("notified", "simple")(srv2.Registry.Snapshot()) {
		t.Fatal("change sent without a poll or a signal")
	}
	changed <- struct{}{}
	waitFor(t, srv2.Registry, "notified change", 2*time.Second, serves("notified", "simple"))
}

func TestReregistersAfterServerRestart(t *testing.T) {
	srv := startServer(t, registrytest.Options{})
	w := &worker{}
	w.set(true, registration.Model{Name: "simple", Versions: []string{"1"}, Ready: true})
	cfg := config(srv, w)
	cfg.WorkerID = "w1"
	run(t, cfg)
	waitFor(t, srv.Registry, "registration", 5*time.Second, serves("w1", "simple"))

	srv.Stop()
	// helix-xds comes back on the same address with an empty table.
	srv2 := startServer(t, registrytest.Options{Addr: srv.Addr, PKI: srv.PKI})
	if len(srv2.Registry.Snapshot()) != 0 {
		t.Fatal("new registry not empty")
	}
	waitFor(t, srv2.Registry, "re-registration", 5*time.Second, serves("w1", "simple"))
}

// A worker whose entry was taken (a second process with the same id) finds
// its lease gone at the next renewal and registers again.
func TestReregistersWhenReplaced(t *testing.T) {
	srv := startServer(t, registrytest.Options{})
	w := &worker{}
	w.set(true)
	cfg := config(srv, w)
	cfg.WorkerID = "w1"
	run(t, cfg)
	waitFor(t, srv.Registry, "registration", 5*time.Second, func(ws []registry.Worker) bool { return len(ws) == 1 })
	first := srv.Registry.Snapshot()[0].Registered
	other := &worker{}
	other.set(false)
	ocfg := config(srv, other)
	ocfg.WorkerID = "w1"
	ocfg.Address = "127.0.0.2"
	stopOther := run(t, ocfg)
	waitFor(t, srv.Registry, "taken over", 5*time.Second, func(ws []registry.Worker) bool { return len(ws) == 1 && ws[0].Address == "127.0.0.2" })
	stopOther()
	waitFor(t, srv.Registry, "back", 5*time.Second, func(ws []registry.Worker) bool {
		return len(ws) == 1 && ws[0].Address == "127.0.0.1" && ws[0].Registered.After(first)
	})
}

func TestNoClientCertificateNeverRegisters(t *testing.T) {
	srv := startServer(t, registrytest.Options{})
	w := &worker{}
	w.set(true)
	cfg := config(srv, w)
	cfg.TLS = srv.PKI.ClientNoCert
	stop := run(t, cfg)
	time.Sleep(500 * time.Millisecond)
	stop()
	if snap := srv.Registry.Snapshot(); len(snap) != 0 {
		t.Fatalf("registered without a client certificate: %+v", snap)
	}
}

func TestConfigValidation(t *testing.T) {
	w := &worker{}
	base := func() registration.Config {
		return registration.Config{XDSAddress: "127.0.0.1:1", Insecure: true, Address: "10.0.0.1", GRPCPort: 8001,
			Models: w.Models, Ready: w.Ready, Logger: quiet}
	}
	for name, mut := range map[string]func(*registration.Config){
		"no xds address":   func(c *registration.Config) { c.XDSAddress = "" },
		"xds without port": func(c *registration.Config) { c.XDSAddress = "helix-xds" },
		"no TLS":           func(c *registration.Config) { c.Insecure = false },
		"no address":       func(c *registration.Config) { c.Address = "" },
		"wildcard address": func(c *registration.Config) { c.Address = "0.0.0.0" },
		"grpc port 0":      func(c *registration.Config) { c.GRPCPort = 0 },
		"grpc port big":    func(c *registration.Config) { c.GRPCPort = 70000 },
		"http port big":    func(c *registration.Config) { c.HTTPPort = 70000 },
		"no models":        func(c *registration.Config) { c.Models = nil },
		"no ready":         func(c *registration.Config) { c.Ready = nil },
		"negative":         func(c *registration.Config) { c.Interval = -time.Second },
		"backoff order":    func(c *registration.Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := base()
			mut(&cfg)
			if err := registration.Run(t.Context(), cfg); !errors.Is(err, registration.ErrConfig) {
				t.Fatalf("Run = %v, want ErrConfig", err)
			}
		})
	}
	// A valid config with nothing listening runs until ctx ends and returns nil.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := registration.Run(ctx, base()); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

func TestManyModels(t *testing.T) {
	srv := startServer(t, registrytest.Options{})
	models := make([]registration.Model, registry.MaxModelsPerWorker)
	for i := range models {
		models[i] = registration.Model{Name: "model-" + strconv.Itoa(i), Versions: []string{"1"}, Ready: true}
	}
	w := &worker{}
	w.set(true, models...)
	cfg := config(srv, w)
	cfg.WorkerID = "big"
	run(t, cfg)
	waitFor(t, srv.Registry, "registration", 5*time.Second, func(ws []registry.Worker) bool {
		return len(ws) == 1 && len(ws[0].Models) == registry.MaxModelsPerWorker
	})
}

// The models' descriptions reach helix-xds; between renewals only a model
// whose versions changed is described again, and each renewal describes
// every model afresh (a reload with a new config).
func TestSendsModelInfo(t *testing.T) {
	srv := startServer(t, registrytest.Options{Config: registry.Config{TTL: 3 * time.Second}})
	w := &worker{}
	w.set(true, registration.Model{Name: "simple", Versions: []string{"1"}, Ready: true},
		registration.Model{Name: "mlp", Versions: []string{"1"}, Ready: true})
	var mu sync.Mutex
	asked := map[string]int{}
	batch := int32(8)
	cfg := config(srv, w)
	cfg.WorkerID = "w1"
	cfg.CheckInterval = 20 * time.Millisecond
	cfg.Info = func(_ context.Context, name string) (*registryv1.ModelInfo, error) {
		mu.Lock()
		defer mu.Unlock()
		asked[name]++
		if name == "mlp" {
			return nil, errors.New("unloaded meanwhile")
		}
		return &registryv1.ModelInfo{Platform: "onnxruntime_onnx", MaxBatchSize: batch,
			Inputs: []*registryv1.TensorInfo{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{16}}}}, nil
	}
	run(t, cfg)
	info := func(ws []registry.Worker, model string) *registryv1.ModelInfo {
		for _, m := range ws[0].Models {
			if m.Name == model {
				return m.Info
			}
		}
		return nil
	}
	waitFor(t, srv.Registry, "registration with info", 5*time.Second, func(ws []registry.Worker) bool {
		return len(ws) == 1 && info(ws, "simple").GetMaxBatchSize() == 8 && info(ws, "mlp") == nil
	})
	time.Sleep(200 * time.Millisecond) // polls, no renewal yet (every second)
	mu.Lock()
	if asked["simple"] != 1 {
		t.Errorf("simple described %d times before the first renewal, want 1", asked["simple"])
	}
	batch = 16
	mu.Unlock()
	// A new version: described again at once.
	w.set(true, registration.Model{Name: "simple", Versions: []string{"1", "2"}, Ready: true})
	waitFor(t, srv.Registry, "new version's info", 500*time.Millisecond, func(ws []registry.Worker) bool {
		return len(ws) == 1 && info(ws, "simple").GetMaxBatchSize() == 16
	})
	mu.Lock()
	batch = 32
	mu.Unlock()
	// Same versions, new config: the next renewal carries it.
	waitFor(t, srv.Registry, "renewal's info", 3*time.Second, func(ws []registry.Worker) bool {
		return len(ws) == 1 && info(ws, "simple").GetMaxBatchSize() == 32
	})
}
