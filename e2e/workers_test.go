package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/pki"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/supervise"
	"github.com/helixflow/helixflow/internal/wire"
)

// workerSpec describes a helix-worker to start.
type workerSpec struct {
	name   string   // process name in logs, unique per test
	repo   string   // model repository
	models []string // loaded at start (explicit model control)
	// register adds --xds-address and the mTLS flags: the worker registers
	// itself with helix-xds, as in production.
	register bool
}

// worker is a running helix-worker of the stack.
type worker struct {
	name               string
	proc               *supervise.Proc
	grpcPort, httpPort int
	// health reaches the worker's HTTP port directly (mTLS: this test
	// presents Envoy's client certificate for workers).
	health     *http.Client
	healthBase string
}

// startWorker starts one more helix-worker in the stack (mTLS, free
// loopback ports) and waits until it is ready.
func (s *stack) startWorker(t *testing.T, spec workerSpec) *worker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	i, err := s.st.AddWorker(ctx, helixstack.Worker{Name: spec.name, Repository: spec.repo, Models: spec.models, NoRegister: !spec.register})
	if err != nil {
		t.Fatal(err)
	}
	w := s.newWorker(t, i)
	s.workers = append(s.workers, w)
	return w
}

// newWorker is the stack's i-th worker.
func (s *stack) newWorker(t *testing.T, i int) *worker {
	t.Helper()
	health, err := s.st.TLSClient(pki.EnvoyWorkerClient)
	if err != nil {
		t.Fatal(err)
	}
	name, p := s.st.Workers()[i].Name, s.st.Ports.Workers[i]
	return &worker{name: name, proc: s.proc(name), grpcPort: p.GRPC, httpPort: p.HTTP, health: health, healthBase: s.st.WorkerURL(i)}
}

// kill ends the worker with SIGKILL: no deregistration, no drain.
func (s *stack) kill(t *testing.T, w *worker) {
	t.Helper()
	if err := s.st.KillProcess(w.name); err != nil {
		t.Fatal(err)
	}
}

// endpoint is the worker's gRPC address as Envoy lists it in /clusters.
func (w *worker) endpoint() string { return addr(w.grpcPort) }

func (w *worker) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, w.name+" ready", 60*time.Second, w.proc, func(ctx context.Context) error {
		_, err := httpGet(ctx, w.health, w.healthBase+wire.RESTServerReady)
		return err
	})
}

// registeredText matches the worker's log line for a successful
// registration in slog's text format (--log-format=text) and captures its
// time; in JSON (the default) the line is {"time":...,"msg":"registered
// with helix-xds",...}.
var registeredText = regexp.MustCompile(`^time=(\S+) level=INFO msg="registered with helix-xds"`)

// registrations returns the times of the worker's registrations so far,
// from its log, in either format.
func (w *worker) registrations(t *testing.T) []time.Time {
	t.Helper()
	b, err := os.ReadFile(w.proc.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, line := range strings.Split(string(b), "\n") {
		var at string
		if strings.HasPrefix(line, "{") {
			var rec struct{ Time, Level, Msg string }
			if json.Unmarshal([]byte(line), &rec) != nil || rec.Level != "INFO" || rec.Msg != "registered with helix-xds" {
				continue
			}
			at = rec.Time
		} else if m := registeredText.FindStringSubmatch(line); m != nil {
			at = m[1]
		} else {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			t.Fatalf("%s: registration time %q: %v", w.name, at, err)
		}
		out = append(out, ts)
	}
	return out
}

// waitRegistered waits until the worker has logged more than n
// registrations and returns the time of the latest.
func (w *worker) waitRegistered(t *testing.T, n int, d time.Duration) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, fmt.Sprintf("%s registration #%d", w.name, n+1), d, w.proc, func(context.Context) error {
		rs := w.registrations(t)
		if len(rs) <= n {
			return fmt.Errorf("%d registrations logged", len(rs))
		}
		at = rs[len(rs)-1]
		return nil
	})
	return at
}

// hostStat is one host of one Envoy cluster, from /clusters.
type hostStat struct {
	healthy   bool
	rqSuccess int
}

// clusterHosts reads Envoy's view of a cluster: host address -> stats.
func (s *stack) clusterHosts(ctx context.Context, cluster string) (map[string]hostStat, error) {
	body, err := s.envoy.Admin(ctx, "/clusters")
	if err != nil {
		return nil, err
	}
	hosts := map[string]hostStat{}
	prefix := cluster + "::"
	for line := range strings.SplitSeq(body, "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		// host::stat::value, where host is ip:port.
		parts := strings.Split(rest, "::")
		if len(parts) != 3 || !strings.Contains(parts[0], ":") {
			continue
		}
		h := hosts[parts[0]]
		switch parts[1] {
		case "health_flags":
			h.healthy = parts[2] == "healthy"
		case "rq_success":
			h.rqSuccess, _ = strconv.Atoi(parts[2])
		}
		hosts[parts[0]] = h
	}
	return hosts, nil
}

// waitHealthy waits until Envoy has exactly the workers' endpoints in the
// cluster, every one healthy.
func (s *stack) waitHealthy(t *testing.T, cluster string, ws ...*worker) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d healthy hosts in %s", len(ws), cluster), 30*time.Second, nil, func(ctx context.Context) error {
		hosts, err := s.clusterHosts(ctx, cluster)
		if err != nil {
			return err
		}
		if len(hosts) != len(ws) {
			return fmt.Errorf("hosts %v", hosts)
		}
		for _, w := range ws {
			if h, ok := hosts[w.endpoint()]; !ok || !h.healthy {
				return fmt.Errorf("%s not healthy in %v", w.endpoint(), hosts)
			}
		}
		return nil
	})
}

// modelRepository makes a repository holding only the named sample
// models, as symbolic links into models/.
func modelRepository(t *testing.T, models ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, m := range models {
		if err := os.Symlink(filepath.Join(repoRoot, "models", m), filepath.Join(dir, m)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
