package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/wire"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTest(t *testing.T, cfg Config) (*Registry, *fakeClock) {
	t.Helper()
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r, clock
}

func registerReq(id, addr string, port uint32, models ...*registryv1.Model) *registryv1.RegisterRequest {
	return &registryv1.RegisterRequest{WorkerId: id, Address: addr, GrpcPort: port, HttpPort: port - 1, Models: models, Ready: true}
}

func model(name string, ready bool, versions ...string) *registryv1.Model {
	return &registryv1.Model{Name: name, Versions: versions, Ready: ready}
}

func mustRegister(t *testing.T, r *Registry, req *registryv1.RegisterRequest) string {
	t.Helper()
	resp, err := r.Register(context.Background(), req)
	if err != nil {
		t.Fatalf("Register(%s): %v", req.GetWorkerId(), err)
	}
	if got := resp.GetLeaseTtl().AsDuration(); got != r.TTL() {
		t.Fatalf("lease TTL %v, want %v", got, r.TTL())
	}
	return resp.GetLeaseId()
}

func wantCode(t *testing.T, err error, code codes.Code, msgPart string) {
	t.Helper()
	s, ok := status.FromError(err)
	if !ok || s.Code() != code {
		t.Fatalf("error %v: want code %v", err, code)
	}
	if !strings.Contains(s.Message(), msgPart) {
		t.Fatalf("error message %q does not name %q", s.Message(), msgPart)
	}
}

func ids(ws []Worker) string {
	var out []string
	for _, w := range ws {
		out = append(out, w.ID)
	}
	return strings.Join(out, ",")
}

func TestNewConfig(t *testing.T) {
	for _, cfg := range []Config{{TTL: time.Millisecond}, {TTL: 2 * time.Hour}, {SweepInterval: time.Microsecond}, {MaxWorkers: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	r, err := New(Config{})
	if err != nil || r.TTL() != DefaultTTL {
		t.Fatalf("New(zero) = %v, TTL %v", err, r.TTL())
	}
}

func TestRegisterRenewDeregister(t *testing.T) {
	ctx := context.Background()
	r, clock := newTest(t, Config{TTL: 10 * time.Second})
	lease := mustRegister(t, r, registerReq("w1", "10.0.0.1", 8001,
		model("simple", true, "2", "1"), model("densenet", false)))

	snap := r.Snapshot()
	if len(snap) != 1 {
		t.Fatalf("snapshot %v, want one worker", snap)
	}
	w := snap[0]
	if w.ID != "w1" || w.Address != "10.0.0.1" || w.GRPCPort != 8001 || w.HTTPPort != 8000 || !w.Ready {
		t.Fatalf("worker %+v", w)
	}
	// Models come back by name, versions ascending.
	if len(w.Models) != 2 || w.Models[0].Name != "densenet" || w.Models[1].Name != "simple" ||
		strings.Join(w.Models[1].Versions, ",") != "1,2" {
		t.Fatalf("models %+v", w.Models)
	}
	if !w.Serves("simple") || w.Serves("densenet") || w.Serves("missing") {
		t.Fatalf("Serves wrong for %+v", w.Models)
	}
	if want := clock.Now().Add(10 * time.Second); !w.Expires.Equal(want) || !w.Registered.Equal(clock.Now()) {
		t.Fatalf("expires %v registered %v", w.Expires, w.Registered)
	}

	// Renewal moves the expiry and replaces the models.
	clock.Advance(4 * time.Second)
	resp, err := r.Renew(ctx, &registryv1.RenewRequest{LeaseId: lease, Models: []*registryv1.Model{model("densenet", true, "1")}, Ready: true})
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if resp.GetLeaseTtl().AsDuration() != 10*time.Second {
		t.Fatalf("renew TTL %v", resp.GetLeaseTtl().AsDuration())
	}
	w = r.Snapshot()[0]
	if !w.Expires.Equal(clock.Now().Add(10*time.Second)) || !w.Serves("densenet") || w.Serves("simple") {
		t.Fatalf("after renew: %+v", w)
	}
	// Snapshots are copies (but for the models, which are read-only:
	// TestSnapshotsShareModelsUntilTheyChange).
	w.Ready, w.Address = false, "10.9.9.9"
	if got := r.Snapshot()[0]; !got.Ready || got.Address != "10.0.0.1" {
		t.Fatal("Snapshot shares memory with the table")
	}

	if _, err := r.Deregister(ctx, &registryv1.DeregisterRequest{LeaseId: lease}); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	if snap := r.Snapshot(); len(snap) != 0 {
		t.Fatalf("after deregister: %v", snap)
	}
	_, err = r.Renew(ctx, &registryv1.RenewRequest{LeaseId: lease})
	wantCode(t, err, codes.NotFound, "lease_id")
	_, err = r.Deregister(ctx, &registryv1.DeregisterRequest{LeaseId: lease})
	wantCode(t, err, codes.NotFound, "lease_id")
}

func TestSnapshotOrder(t *testing.T) {
	r, _ := newTest(t, Config{})
	for _, id := range []string{"w3", "w1", "w2", "a9"} {
		mustRegister(t, r, registerReq(id, "host-"+id, 8001))
	}
	for range 3 {
		if got := ids(r.Snapshot()); got != "a9,w1,w2,w3" {
			t.Fatalf("order %s", got)
		}
	}
}

func TestLeaseLapse(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, clock := newTest(t, Config{TTL: 10 * time.Second, Registerer: reg})
	l1 := mustRegister(t, r, registerReq("w1", "10.0.0.1", 8001, model("simple", true, "1")))
	clock.Advance(5 * time.Second)
	mustRegister(t, r, registerReq("w2", "10.0.0.2", 8001, model("simple", true, "1")))

	clock.Advance(5*time.Second - time.Nanosecond)
	if n := r.sweep(); n != 0 {
		t.Fatalf("swept %d leases before they lapsed", n)
	}
	clock.Advance(time.Nanosecond)
	if n := r.sweep(); n != 1 {
		t.Fatalf("swept %d, want 1", n)
	}
	if got := ids(r.Snapshot()); got != "w2" {
		t.Fatalf("after lapse: %s", got)
	}
	_, err := r.Renew(context.Background(), &registryv1.RenewRequest{LeaseId: l1})
	wantCode(t, err, codes.NotFound, "lease_id")
	if got := testutil.ToFloat64(r.metrics.expirations); got != 1 {
		t.Fatalf("expirations %v", got)
	}
	if w, e := testutil.ToFloat64(r.metrics.workers), testutil.ToFloat64(r.metrics.endpoints); w != 1 || e != 1 {
		t.Fatalf("gauges workers=%v endpoints=%v", w, e)
	}
}

// A lease that lapsed is refused even if the sweep has not run yet.
func TestLapsedLeaseBeforeSweep(t *testing.T) {
	r, clock := newTest(t, Config{TTL: time.Second})
	ch := r.Subscribe(t.Context())
	lease := mustRegister(t, r, registerReq("w1", "10.0.0.1", 8001))
	<-ch
	clock.Advance(time.Second)
	_, err := r.Renew(context.Background(), &registryv1.RenewRequest{LeaseId: lease})
	wantCode(t, err, codes.NotFound, "lapsed")
	if len(r.Snapshot()) != 0 {
		t.Fatal("lapsed worker still listed")
	}
	select {
	case <-ch:
	default:
		t.Fatal("removal not signalled")
	}
}

func TestRunExpires(t *testing.T) {
	r, clock := newTest(t, Config{TTL: time.Second, SweepInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	mustRegister(t, r, registerReq("w1", "10.0.0.1", 8001))
	ch := r.Subscribe(t.Context())
	clock.Advance(time.Second)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not expire the lease")
	}
	if len(r.Snapshot()) != 0 {
		t.Fatal("worker still listed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestReregisterReplaces(t *testing.T) {
	ctx := context.Background()
	r, _ := newTest(t, Config{})
	old := mustRegister(t, r, registerReq("w1", "10.0.0.1", 8001, model("a", true, "1")))
	lease := mustRegister(t, r, registerReq("w1", "10.0.0.9", 9001, model("b", true, "1")))
	if old == lease {
		t.Fatal("same lease id twice")
	}
	snap := r.Snapshot()
	if len(snap) != 1 || snap[0].Address != "10.0.0.9" || !snap[0].Serves("b") || snap[0].Serves("a") {
		t.Fatalf("after re-register: %+v", snap)
	}
	_, err := r.Renew(ctx, &registryv1.RenewRequest{LeaseId: old})
	wantCode(t, err, codes.NotFound, "lease_id")
	if _, err := r.Renew(ctx, &registryv1.RenewRequest{LeaseId: lease}); err != nil {
		t.Fatalf("renew new lease: %v", err)
	}

	// A different id at the same gRPC endpoint replaces the entry too.
	mustRegister(t, r, registerReq("w1-renamed", "10.0.0.9", 9001))
	if got := ids(r.Snapshot()); got != "w1-renamed" {
		t.Fatalf("after registering at the same endpoint: %s", got)
	}
	// The same address on another port is another worker.
	mustRegister(t, r, registerReq("w2", "10.0.0.9", 9002))
	if got := ids(r.Snapshot()); got != "w1-renamed,w2" {
		t.Fatalf("two ports: %s", got)
	}
}

func TestMaxWorkers(t *testing.T) {
	r, _ := newTest(t, Config{MaxWorkers: 3})
	for i := range 3 {
		mustRegister(t, r, registerReq(fmt.Sprintf("w%d", i), "10.0.0.1", uint32(8001+i)))
	}
	_, err := r.Register(context.Background(), registerReq("w3", "10.0.0.1", 9000))
	wantCode(t, err, codes.ResourceExhausted, "limit")
	// A worker that is already in the table may register again when full.
	mustRegister(t, r, registerReq("w1", "10.0.0.1", 8002))
	if len(r.Snapshot()) != 3 {
		t.Fatal("table size changed")
	}
}

func TestDefaultMaxWorkers(t *testing.T) {
	r, _ := newTest(t, Config{})
	for i := range DefaultMaxWorkers {
		mustRegister(t, r, registerReq("w"+strconv.Itoa(i), "10.0.0.1", uint32(1+i)+1))
	}
	_, err := r.Register(context.Background(), registerReq("one-more", "10.0.0.2", 8001))
	wantCode(t, err, codes.ResourceExhausted, "10000")
}

func TestValidation(t *testing.T) {
	manyModels := make([]*registryv1.Model, MaxModelsPerWorker+1)
	for i := range manyModels {
		manyModels[i] = model("m"+strconv.Itoa(i), true, "1")
	}
	manyVersions := make([]string, MaxVersionsPerModel+1)
	for i := range manyVersions {
		manyVersions[i] = strconv.Itoa(i)
	}
	// 4096 models of 5 versions: each model within bounds, the sum not.
	tooManyInAll := make([]*registryv1.Model, MaxModelsPerWorker)
	for i := range tooManyInAll {
		tooManyInAll[i] = model("m"+strconv.Itoa(i), true, "1", "2", "3", "4", "5")
	}
	maxModels := manyModels[:MaxModelsPerWorker]

	ok := func(mut func(*registryv1.RegisterRequest)) *registryv1.RegisterRequest {
		req := registerReq("worker-1", "10.1.2.3", 8001, model("simple", true, "1"))
		mut(req)
		return req
	}
	tests := []struct {
		name  string
		req   *registryv1.RegisterRequest
		code  codes.Code // OK: accepted
		field string
	}{
		{"valid", ok(func(*registryv1.RegisterRequest) {}), codes.OK, ""},
		{"host name", ok(func(r *registryv1.RegisterRequest) { r.Address = "worker-0.workers.helix.svc.cluster.local" }), codes.OK, ""},
		{"ipv6", ok(func(r *registryv1.RegisterRequest) { r.Address = "fd00::1" }), codes.OK, ""},
		{"loopback", ok(func(r *registryv1.RegisterRequest) { r.Address = "127.0.0.1" }), codes.OK, ""},
		{"default worker id", ok(func(r *registryv1.RegisterRequest) { r.WorkerId = "node-7.example:8001" }), codes.OK, ""},
		{"no http", ok(func(r *registryv1.RegisterRequest) { r.HttpPort = 0 }), codes.OK, ""},
		{"no models", ok(func(r *registryv1.RegisterRequest) { r.Models = nil }), codes.OK, ""},
		{"4096 models", ok(func(r *registryv1.RegisterRequest) { r.Models = maxModels }), codes.OK, ""},
		{"model name in unicode", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("modèle_é", true, "1")} }), codes.OK, ""},
		{"version 0", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("m", true, "0")} }), codes.OK, ""},

		{"empty id", ok(func(r *registryv1.RegisterRequest) { r.WorkerId = "" }), codes.InvalidArgument, "worker_id"},
		{"id too long", ok(func(r *registryv1.RegisterRequest) { r.WorkerId = strings.Repeat("a", 254) }), codes.InvalidArgument, "worker_id"},
		{"sql in id", ok(func(r *registryv1.RegisterRequest) { r.WorkerId = "w1'; DROP TABLE workers;--" }), codes.InvalidArgument, "worker_id"},
		{"id with slash", ok(func(r *registryv1.RegisterRequest) { r.WorkerId = "../w1" }), codes.InvalidArgument, "worker_id"},
		{"id with newline", ok(func(r *registryv1.RegisterRequest) { r.WorkerId = "w1\nlevel=error" }), codes.InvalidArgument, "worker_id"},
		{"id leading dash", ok(func(r *registryv1.RegisterRequest) { r.WorkerId = "-w1" }), codes.InvalidArgument, "worker_id"},

		{"empty address", ok(func(r *registryv1.RegisterRequest) { r.Address = "" }), codes.InvalidArgument, "address"},
		{"address with port", ok(func(r *registryv1.RegisterRequest) { r.Address = "10.0.0.1:8001" }), codes.InvalidArgument, "address"},
		{"address url", ok(func(r *registryv1.RegisterRequest) { r.Address = "http://evil.example" }), codes.InvalidArgument, "address"},
		{"unspecified v4", ok(func(r *registryv1.RegisterRequest) { r.Address = "0.0.0.0" }), codes.InvalidArgument, "address"},
		{"unspecified v6", ok(func(r *registryv1.RegisterRequest) { r.Address = "::" }), codes.InvalidArgument, "address"},
		{"multicast", ok(func(r *registryv1.RegisterRequest) { r.Address = "224.0.0.1" }), codes.InvalidArgument, "address"},
		{"zoned v6", ok(func(r *registryv1.RegisterRequest) { r.Address = "fe80::1%eth0" }), codes.InvalidArgument, "address"},
		{"bad ip", ok(func(r *registryv1.RegisterRequest) { r.Address = "300.1.1.1" }), codes.InvalidArgument, "address"},
		{"partial ip", ok(func(r *registryv1.RegisterRequest) { r.Address = "10.1.2" }), codes.InvalidArgument, "address"},
		{"sql in address", ok(func(r *registryv1.RegisterRequest) { r.Address = "x' OR '1'='1" }), codes.InvalidArgument, "address"},
		{"label dash", ok(func(r *registryv1.RegisterRequest) { r.Address = "-worker.example" }), codes.InvalidArgument, "address"},
		{"empty label", ok(func(r *registryv1.RegisterRequest) { r.Address = "worker..example" }), codes.InvalidArgument, "address"},
		{"trailing dot", ok(func(r *registryv1.RegisterRequest) { r.Address = "worker.example." }), codes.InvalidArgument, "address"},
		{"long label", ok(func(r *registryv1.RegisterRequest) { r.Address = strings.Repeat("a", 64) + ".example" }), codes.InvalidArgument, "address"},
		{"long host", ok(func(r *registryv1.RegisterRequest) { r.Address = strings.Repeat("abcdefgh.", 30) + "com" }), codes.InvalidArgument, "address"},

		{"pool", ok(func(r *registryv1.RegisterRequest) { r.Pool = "canary-2" }), codes.OK, ""},
		{"pool of 63", ok(func(r *registryv1.RegisterRequest) { r.Pool = strings.Repeat("p", 63) }), codes.OK, ""},
		{"pool of 64", ok(func(r *registryv1.RegisterRequest) { r.Pool = strings.Repeat("p", 64) }), codes.InvalidArgument, "pool \"pppp"},
		{"pool upper case", ok(func(r *registryv1.RegisterRequest) { r.Pool = "GPU" }), codes.InvalidArgument, `pool "GPU": not a valid pool name: byte 0 is 'G'`},
		{"pool with a dot", ok(func(r *registryv1.RegisterRequest) { r.Pool = "a.b" }), codes.InvalidArgument, `pool "a.b"`},
		{"pool label injection", ok(func(r *registryv1.RegisterRequest) { r.Pool = "a\"} evil{x=\"" }), codes.InvalidArgument, "pool"},

		{"grpc port 0", ok(func(r *registryv1.RegisterRequest) { r.GrpcPort = 0 }), codes.InvalidArgument, "grpc_port"},
		{"grpc port 65536", ok(func(r *registryv1.RegisterRequest) { r.GrpcPort = 65536 }), codes.InvalidArgument, "grpc_port"},
		{"http port huge", ok(func(r *registryv1.RegisterRequest) { r.HttpPort = 1 << 31 }), codes.InvalidArgument, "http_port"},

		{"empty model name", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("", true, "1")} }), codes.InvalidArgument, "models[0].name"},
		{"model path", ok(func(r *registryv1.RegisterRequest) {
			r.Models = []*registryv1.Model{model("ok", true, "1"), model("../etc", true, "1")}
		}), codes.InvalidArgument, "models[1].name"},
		{"model dot", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model(".hidden", true, "1")} }), codes.InvalidArgument, "models[0].name"},
		{"model control char", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("a\x00b", true, "1")} }), codes.InvalidArgument, "models[0].name"},
		{"model with a space", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("my model", true, "1")} }),
			codes.InvalidArgument, `models[0].name "my model": not a valid model name: byte 2 is ' ', white space`},
		{"model wildcard", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("*", true, "1")} }), codes.InvalidArgument, "models[0].name"},
		{"model dot dot", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("a..b", true, "1")} }), codes.InvalidArgument, "models[0].name"},
		{"model too long", ok(func(r *registryv1.RegisterRequest) {
			r.Models = []*registryv1.Model{model(strings.Repeat("m", 256), true, "1")}
		}), codes.InvalidArgument, "models[0].name"},
		{"duplicate model", ok(func(r *registryv1.RegisterRequest) {
			r.Models = []*registryv1.Model{model("a", true, "1"), model("a", true, "2")}
		}), codes.InvalidArgument, "models[1].name"},
		{"bad version", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("a", true, "1", "v2")} }), codes.InvalidArgument, "models[0].versions[1]"},
		{"negative version", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("a", true, "-1")} }), codes.InvalidArgument, "models[0].versions[0]"},
		{"leading zero version", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("a", true, "01")} }), codes.InvalidArgument, `models[0].versions[0] "01": not a valid model version: leading zero`},
		{"version past the gateway's 18 digits", ok(func(r *registryv1.RegisterRequest) {
			r.Models = []*registryv1.Model{model("a", true, "1000000000000000000")}
		}), codes.InvalidArgument, "models[0].versions[0]"},
		{"sql version", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("a", true, "1 OR 1=1")} }), codes.InvalidArgument, "models[0].versions[0]"},
		{"duplicate version", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("a", true, "1", "1")} }), codes.InvalidArgument, "models[0].versions[1]"},
		{"ready without version", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("a", true)} }), codes.InvalidArgument, "models[0]"},

		{"too many models", ok(func(r *registryv1.RegisterRequest) { r.Models = manyModels }), codes.ResourceExhausted, "models"},
		{"too many versions", ok(func(r *registryv1.RegisterRequest) { r.Models = []*registryv1.Model{model("a", true, manyVersions...)} }), codes.ResourceExhausted, "models[0].versions"},
		{"too many versions in all", ok(func(r *registryv1.RegisterRequest) { r.Models = tooManyInAll }), codes.ResourceExhausted, "versions in all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTest(t, Config{})
			resp, err := r.Register(context.Background(), tt.req)
			if tt.code == codes.OK {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if validLeaseID(resp.GetLeaseId()) != nil {
					t.Fatalf("lease id %q", resp.GetLeaseId())
				}
				return
			}
			wantCode(t, err, tt.code, tt.field)
			if len(r.Snapshot()) != 0 {
				t.Fatal("a refused request changed the table")
			}
		})
	}
}

func TestRenewValidation(t *testing.T) {
	ctx := context.Background()
	r, _ := newTest(t, Config{})
	lease := mustRegister(t, r, registerReq("w1", "10.0.0.1", 8001, model("a", true, "1")))
	for _, tt := range []struct {
		name  string
		req   *registryv1.RenewRequest
		code  codes.Code
		field string
	}{
		{"empty lease", &registryv1.RenewRequest{}, codes.InvalidArgument, "lease_id"},
		{"short lease", &registryv1.RenewRequest{LeaseId: "abc"}, codes.InvalidArgument, "lease_id"},
		{"upper-case lease", &registryv1.RenewRequest{LeaseId: strings.ToUpper(lease)}, codes.InvalidArgument, "lease_id"},
		{"sql lease", &registryv1.RenewRequest{LeaseId: "' OR 1=1 --                     "}, codes.InvalidArgument, "lease_id"},
		{"unknown lease", &registryv1.RenewRequest{LeaseId: strings.Repeat("0", 32)}, codes.NotFound, "lease_id"},
		{"bad model", &registryv1.RenewRequest{LeaseId: lease, Models: []*registryv1.Model{model("a/b", true, "1")}}, codes.InvalidArgument, "models[0].name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Renew(ctx, tt.req)
			wantCode(t, err, tt.code, tt.field)
		})
	}
	_, err := r.Deregister(ctx, &registryv1.DeregisterRequest{LeaseId: "nope"})
	wantCode(t, err, codes.InvalidArgument, "lease_id")
	// A refused renewal leaves the entry as it was.
	if w := r.Snapshot(); len(w) != 1 || !w[0].Serves("a") {
		t.Fatalf("table changed: %+v", w)
	}
}

func TestNotifications(t *testing.T) {
	ctx := context.Background()
	r, clock := newTest(t, Config{})
	subCtx, cancel := context.WithCancel(t.Context())
	ch := r.Subscribe(subCtx)
	other := r.Subscribe(t.Context())
	pending := func(c <-chan struct{}) int {
		n := 0
		for {
			select {
			case <-c:
				n++
			default:
				return n
			}
		}
	}

	// Several changes in a row: one signal.
	lease := mustRegister(t, r, registerReq("w1", "10.0.0.1", 8001, model("a", true, "1", "2")))
	mustRegister(t, r, registerReq("w2", "10.0.0.2", 8001))
	if n := pending(ch); n != 1 {
		t.Fatalf("%d signals for two registrations, want 1 (coalesced)", n)
	}

	// A renewal that changes nothing (models in another order) is no change.
	clock.Advance(time.Second)
	if _, err := r.Renew(ctx, &registryv1.RenewRequest{LeaseId: lease, Ready: true,
		Models: []*registryv1.Model{model("a", true, "2", "1")}}); err != nil {
		t.Fatal(err)
	}
	if n := pending(ch); n != 0 {
		t.Fatalf("plain renewal signalled %d times", n)
	}

	// Each kind of change signals.
	changes := []*registryv1.RenewRequest{
		{LeaseId: lease, Ready: false, Models: []*registryv1.Model{model("a", true, "1", "2")}},
		{LeaseId: lease, Ready: false, Models: []*registryv1.Model{model("a", false, "1", "2")}},
		{LeaseId: lease, Ready: false, Models: []*registryv1.Model{model("a", false, "1")}},
		{LeaseId: lease, Ready: false, Models: []*registryv1.Model{model("a", false, "1"), model("b", false)}},
	}
	for i, req := range changes {
		if _, err := r.Renew(ctx, req); err != nil {
			t.Fatal(err)
		}
		if n := pending(ch); n != 1 {
			t.Fatalf("change %d: %d signals", i, n)
		}
	}
	if _, err := r.Deregister(ctx, &registryv1.DeregisterRequest{LeaseId: lease}); err != nil {
		t.Fatal(err)
	}
	if n := pending(ch); n != 1 {
		t.Fatalf("deregister: %d signals", n)
	}
	// A refused request does not signal.
	_, _ = r.Register(ctx, registerReq("", "10.0.0.1", 8001))
	if n := pending(ch); n != 0 {
		t.Fatalf("refused request signalled")
	}
	if n := pending(other); n != 1 {
		t.Fatalf("second subscriber saw %d signals, want 1", n)
	}

	// Ending the subscription removes it.
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.subs)
		r.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers after cancel, want 1", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// callerKey carries the caller's identity in tests' contexts.
type callerKey struct{}

func as(id string) context.Context { return context.WithValue(context.Background(), callerKey{}, id) }

func identifyFromContext(ctx context.Context) (string, error) {
	switch id, _ := ctx.Value(callerKey{}).(string); id {
	case "":
		return "", errors.New("no client certificate")
	case "custom":
		return "", status.Error(codes.Unauthenticated, "custom status")
	default:
		return id, nil
	}
}

// A worker id belongs to the identity that registered it while its lease
// lives: another identity cannot replace, renew or end it, nor take its
// endpoint; after the lease lapsed it can.
func TestIdentityBinding(t *testing.T) {
	r, clock := newTest(t, Config{Identify: identifyFromContext})
	_, err := r.Register(context.Background(), registerReq("w1", "10.0.0.1", 8001))
	wantCode(t, err, codes.PermissionDenied, "no client certificate")
	_, err = r.Register(as("custom"), registerReq("w1", "10.0.0.1", 8001))
	wantCode(t, err, codes.Unauthenticated, "custom status")

	lease, err := r.Register(as("a"), registerReq("w1", "10.0.0.1", 8001))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Register(as("b"), registerReq("w1", "10.0.0.2", 8001))
	wantCode(t, err, codes.PermissionDenied, `worker_id "w1" is held by another identity (a) under a live lease`)
	_, err = r.Register(as("b"), registerReq("w2", "10.0.0.1", 8001))
	wantCode(t, err, codes.PermissionDenied, `held by worker_id "w1" of another identity (a)`)
	_, err = r.Renew(as("b"), &registryv1.RenewRequest{LeaseId: lease.GetLeaseId()})
	wantCode(t, err, codes.PermissionDenied, "registered by another identity (a)")
	_, err = r.Deregister(as("b"), &registryv1.DeregisterRequest{LeaseId: lease.GetLeaseId()})
	wantCode(t, err, codes.PermissionDenied, "registered by another identity (a)")
	if snap := r.Snapshot(); len(snap) != 1 || snap[0].Identity != "a" || snap[0].Address != "10.0.0.1" {
		t.Fatalf("after refused calls: %+v", snap)
	}
	// The same identity re-registers (a restart) and renews.
	lease, err = r.Register(as("a"), registerReq("w1", "10.0.0.1", 8001))
	if err != nil {
		t.Fatalf("the owner registering again: %v", err)
	}
	if _, err := r.Renew(as("a"), &registryv1.RenewRequest{LeaseId: lease.GetLeaseId()}); err != nil {
		t.Fatalf("the owner renewing: %v", err)
	}
	// Once the lease lapsed, the id is free.
	clock.Advance(r.TTL())
	if _, err := r.Register(as("b"), registerReq("w1", "10.0.0.1", 8001)); err != nil {
		t.Fatalf("another identity after the lease lapsed: %v", err)
	}
}

// SetModels: a listed identity advertises its models only, at Register and
// Renew; an entry the new rules refuse goes at once; others are free.
func TestSetModels(t *testing.T) {
	r, _ := newTest(t, Config{Identify: identifyFromContext})
	r.SetModels(map[string][]string{"a": {"m1"}})
	_, err := r.Register(as("a"), registerReq("w1", "10.0.0.1", 8001, model("m2", true, "1")))
	wantCode(t, err, codes.PermissionDenied, `identity a may not advertise model "m2"`)
	lease, err := r.Register(as("a"), registerReq("w1", "10.0.0.1", 8001, model("m1", true, "1")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Renew(as("a"), &registryv1.RenewRequest{LeaseId: lease.GetLeaseId(), Ready: true, Models: []*registryv1.Model{model("m2", true, "1")}})
	wantCode(t, err, codes.PermissionDenied, `may not advertise model "m2"`)
	if _, err := r.Register(as("b"), registerReq("w2", "10.0.0.2", 8001, model("m2", true, "1"))); err != nil {
		t.Fatalf("an identity not listed: %v", err)
	}
	r.SetModels(map[string][]string{"b": {"m1"}})
	if snap := r.Snapshot(); len(snap) != 1 || snap[0].ID != "w1" {
		t.Fatalf("after narrowing b's models: %+v", snap)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, _ := newTest(t, Config{Registerer: reg})
	ctx := context.Background()
	l1 := mustRegister(t, r, registerReq("w1", "10.0.0.1", 8001, model("a", true, "1"), model("b", true, "1"), model("c", false)))
	l2 := mustRegister(t, r, registerReq("w2", "10.0.0.2", 8001, model("a", true, "1")))
	check := func(workers, endpoints float64) {
		t.Helper()
		if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP helix_xds_registry_endpoints Routable (worker, model) pairs: ready workers times their ready models.
# TYPE helix_xds_registry_endpoints gauge
helix_xds_registry_endpoints %v
# HELP helix_xds_registry_workers Workers holding a lease in the registry, ready or not.
# TYPE helix_xds_registry_workers gauge
helix_xds_registry_workers %v
`, endpoints, workers)), "helix_xds_registry_workers", "helix_xds_registry_endpoints"); err != nil {
			t.Fatal(err)
		}
	}
	check(2, 3)
	if _, err := r.Renew(ctx, &registryv1.RenewRequest{LeaseId: l2, Ready: false, Models: []*registryv1.Model{model("a", true, "1")}}); err != nil {
		t.Fatal(err)
	}
	check(2, 2)
	mustRegister(t, r, registerReq("w1", "10.0.0.1", 8001, model("a", true, "1")))
	check(2, 1)
	_, _ = r.Deregister(ctx, &registryv1.DeregisterRequest{LeaseId: l1}) // replaced: not found
	check(2, 1)
	if _, err := New(Config{Registerer: reg}); err == nil {
		t.Fatal("registering the metrics twice was accepted")
	}
}

func TestConcurrent(t *testing.T) {
	r, _ := newTest(t, Config{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			id := fmt.Sprintf("w%d", i)
			for j := range 50 {
				resp, err := r.Register(ctx, registerReq(id, "10.0.0.1", uint32(8001+i), model("m", true, "1")))
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = r.Renew(ctx, &registryv1.RenewRequest{LeaseId: resp.GetLeaseId(), Ready: j%2 == 0})
				_ = r.Snapshot()
				if j%5 == 0 {
					_, _ = r.Deregister(ctx, &registryv1.DeregisterRequest{LeaseId: resp.GetLeaseId()})
				}
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			r.sweep()
		}
	})
	wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byID) != len(r.byLease) || len(r.byID) != len(r.byEndpoint) {
		t.Fatalf("indexes disagree: %d %d %d", len(r.byID), len(r.byLease), len(r.byEndpoint))
	}
	n := 0
	for _, e := range r.byID {
		n += e.worker.readyEndpoints()
	}
	if n != r.endpoints {
		t.Fatalf("endpoint count %d, table has %d", r.endpoints, n)
	}
}

// Snapshots share a worker's models (read-only) until they change: the
// builder then tells an unchanged worker by its models' backing array
// instead of comparing 1,000 models per worker on every rebuild, and a
// snapshot of 100 workers x 1,000 models copies no model. A change
// replaces them; an earlier snapshot keeps what it had.
func TestSnapshotsShareModelsUntilTheyChange(t *testing.T) {
	ctx := context.Background()
	r, _ := newTest(t, Config{})
	lease := mustRegister(t, r, registerReq("w1", "10.0.0.1", 8001, model("simple", true, "1")))
	a, b := r.Snapshot()[0], r.Snapshot()[0]
	if &a.Models[0] != &b.Models[0] {
		t.Fatal("two snapshots of an unchanged worker copy its models")
	}
	if _, err := r.Renew(ctx, &registryv1.RenewRequest{LeaseId: lease, Models: []*registryv1.Model{model("simple", false, "1")}, Ready: true}); err != nil {
		t.Fatal(err)
	}
	c := r.Snapshot()[0]
	if &c.Models[0] == &a.Models[0] || c.Models[0].Ready || !a.Models[0].Ready {
		t.Fatalf("after a change: new snapshot %+v, earlier one %+v", c.Models, a.Models)
	}
}

// TestRegisterPool: a worker's pool is in every snapshot, "" as
// wire.DefaultPool, and follows a new registration.
func TestRegisterPool(t *testing.T) {
	r, _ := newTest(t, Config{})
	ctx := context.Background()
	for _, tc := range []struct{ sent, want string }{
		{"", wire.DefaultPool},
		{"canary", "canary"},
		{"default", "default"},
	} {
		req := registerReq("w1", "10.1.2.3", 8001, model("simple", true, "1"))
		req.Pool = tc.sent
		if _, err := r.Register(ctx, req); err != nil {
			t.Fatal(err)
		}
		if snap := r.Snapshot(); len(snap) != 1 || snap[0].Pool != tc.want {
			t.Errorf("pool %q: snapshot %+v, want pool %q", tc.sent, snap, tc.want)
		}
	}
}
