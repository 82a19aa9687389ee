// Package stack is HelixFlow's whole local stack as one typed description:
// which processes run (Postgres, Redis, helix-authz, helix-xds, the
// helix-workers with their models, Envoy, mailpit (the SMTP server that
// keeps helix-authz's mails readable), and optionally Jaeger (traces),
// Prometheus and Alertmanager), on which ports, with which TLS
// material (the development PKI of internal/pki, as `helixctl pki init`
// makes it), in which order. `make run` (cmd/helix-stack), the end-to-end
// tests (e2e) and the gateway benchmark (bench/gateway) all start it from
// here, so each binary's flags are spelled out once, in this package.
//
// Processes run under internal/supervise: started in the order of
// Stack.description, each waited for until ready before the next (its
// dependencies come first), one log file each in Dir/logs, stopped newest
// first (the workers deregister before helix-xds and Envoy go).
//
// Adding a process: a method returning its supervise.Spec (see procs.go),
// one line in description, and its ports in Ports.table.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/supervise"
)

// Process names: the supervise names and log files (logs/NAME.log).
const (
	Postgres     = "postgres"
	Authz        = "helix-authz"
	XDS          = "helix-xds"
	Redis        = "redis"
	Envoy        = "envoy"
	Alertmanager = "alertmanager"
	Prometheus   = "prometheus"
	Mailpit      = "mailpit"
	// Jaeger is in jaeger.go.
)

// AuthzReplica is the second helix-authz (Options.AuthzReplicas); the
// n-th is helix-authz-n.
const AuthzReplica = Authz + "-2"

// Options say which stack to run and where.
type Options struct {
	// Root is the repository: models/, deploy/local/gateway.yaml, alerts/.
	Root string
	// Dir holds the state: pki/, pg/, redis/, logs/, kek, admin-token,
	// gateway.yaml, envoy.yaml, prometheus/, alertmanager/. What is there
	// is kept and used again (make run's .helix/).
	Dir string
	// BinDir holds helix-authz, helix-xds and helix-worker (default
	// Root/bin).
	BinDir string
	// EnvoyBin is Envoy (default: envoybin.Find(Root)).
	EnvoyBin string
	// MailpitBin is mailpit (default: mailpitbin.Find(Root)).
	MailpitBin string
	// DefaultPorts takes each port's default when it is free (make run);
	// otherwise every port is a free one. HELIX_<NAME>_PORT forces a port
	// either way.
	DefaultPorts bool
	// Workers are the helix-workers (default: DefaultWorkers).
	Workers []Worker
	// AuthzReplicas runs more helix-authz instances (helix-authz-2, ...)
	// on ports of their own (AUTHZ2, ADMIN2, EXTAUTHZ2, AUTHZ2_METRICS, ...),
	// sharing the first's Postgres, issuer and secrets; Envoy balances its
	// Checks across all (the gateway config's authz.replicas). The chaos
	// suite kills one of two.
	AuthzReplicas int
	// Monitoring adds Prometheus and Alertmanager, configured by alerts/;
	// helix-xds's rollout controller evaluates its SLOs against that
	// Prometheus (--prometheus-url).
	Monitoring bool
	// ScrapeInterval replaces alerts/prometheus.yml's scrape and rule
	// evaluation intervals (tests: 1s, so that a rollout's short interval
	// holds several samples); 0 keeps the file's.
	ScrapeInterval time.Duration
	// Tracing runs Jaeger (jaeger.go; deploy/local/jaeger.yaml, memory
	// storage) and sends every daemon's spans to it (--otlp-endpoint) and
	// Envoy's (the gateway config's tracing section, unless GatewayConfig
	// is given: then that config says).
	Tracing bool
	// TraceSampling is the share of requests the gateway samples (the
	// tracing section's sampling) with Tracing; 0 means 1, every request.
	TraceSampling float64
	// JaegerBin is Jaeger (default: FindJaeger(Root)).
	JaegerBin string
	// JaegerLater: with Tracing and no Jaeger built, the stack starts
	// without it (the flags and the gateway config name its port all the
	// same) and BuildJaeger builds and starts it (make run's first run).
	// Otherwise a missing Jaeger is an error.
	JaegerLater bool
	// Restart: a process that dies is restarted with bounded backoff
	// (make run); otherwise a death ends Wait with an error naming it.
	Restart bool
	// GatewayConfig returns helix-xds's config file (written to
	// Dir/gateway.yaml; relative paths resolve against Dir). Default:
	// deploy/local/gateway.yaml with this stack's ports.
	GatewayConfig func(*Stack) ([]byte, error)
	// Args adds flags to the named process's command line (tests:
	// helix-xds --lease-ttl=5s).
	Args map[string][]string
	// CertLifetime shortens the development PKI's certificates (tests of
	// the expiry alerts); 0: internal/pki's default.
	CertLifetime time.Duration
	// NodeID names Envoy to helix-xds (default "helix-local").
	NodeID string
	// EnvoyConcurrency is Envoy's worker threads (0: one per core).
	EnvoyConcurrency int
	// EnvoyDiscardStdout drops Envoy's access log (benchmarks: formatted
	// and written, but no disk in the measurement).
	EnvoyDiscardStdout bool
	// EnvoyHotRestart starts Envoy able to hot restart (RestartEnvoy:
	// the new process takes the listening sockets, the old one drains its
	// connections); otherwise it runs with --disable-hot-restart.
	EnvoyHotRestart bool
	Logger          *slog.Logger // default slog.Default()
}

// Worker is one helix-worker.
type Worker struct {
	// Name is its process name and --id.
	Name string
	// Repository is its model repository (default Root/models).
	Repository string
	// Models are loaded at start (default: every model, "*").
	Models []string
	// NoRegister: it does not register with helix-xds (a test registers
	// it, or a benchmark's trials do).
	NoRegister bool
	// Plaintext: no TLS on its listeners (a benchmark's direct path);
	// otherwise it serves mTLS, as Envoy's workers_tls expects.
	Plaintext bool
	// Pool is its pool (--pool; a traffic policy's variants and rollouts
	// pick workers by pool); "" leaves the worker's default,
	// wire.DefaultPool.
	Pool string
	// Args adds flags to its command line.
	Args []string
}

// DefaultWorkers is make run's: two workers serving every sample model.
func DefaultWorkers() []Worker {
	return []Worker{{Name: "helix-worker-1"}, {Name: "helix-worker-2"}}
}

// Stack is a described stack; Start runs it.
type Stack struct {
	opts  Options
	Ports Ports
	// Issuer is helix-authz's OAuth2 base URL as clients reach it.
	Issuer string
	// DatabaseURL is Postgres's URL for helix-authz, with its password
	// (Dir/pg-password); set once Start began.
	DatabaseURL string
	// AdminToken is helix-authz's admin API token (Dir/admin-token).
	AdminToken string
	// EnvoyAdminURL is Envoy's admin interface.
	EnvoyAdminURL string
	// MailpitURL is mailpit's web UI and API (/api/v1/messages): the
	// mails helix-authz sent.
	MailpitURL string

	group *supervise.Group
	specs map[string]supervise.Spec // by name, for StartProcess
	// jaegerPending: Tracing, but Jaeger waits for BuildJaeger.
	jaegerPending atomic.Bool
}

// New describes the stack and picks its ports; it starts nothing.
func New(opts Options) (*Stack, error) {
	if opts.Root == "" || opts.Dir == "" {
		return nil, errors.New("stack: Root and Dir are required")
	}
	var err error
	if opts.Root, err = filepath.Abs(opts.Root); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	if opts.BinDir == "" {
		opts.BinDir = filepath.Join(opts.Root, "bin")
	}
	if opts.Workers == nil {
		opts.Workers = DefaultWorkers()
	}
	if opts.NodeID == "" {
		opts.NodeID = "helix-local"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Stack{opts: opts, specs: map[string]supervise.Spec{}}
	s.Ports.Workers = make([]WorkerPorts, len(opts.Workers))
	s.Ports.AuthzReplicas = make([]AuthzPorts, opts.AuthzReplicas)
	if err := s.Ports.pick(opts.DefaultPorts, os.Getenv); err != nil {
		return nil, err
	}
	s.Issuer = "https://" + Addr(s.Ports.Authz)
	s.EnvoyAdminURL = "http://" + Addr(s.Ports.EnvoyAdmin)
	s.MailpitURL = "http://" + Addr(s.Ports.MailpitUI)
	return s, nil
}

// description is the stack, in start order: each process's dependencies
// come before it. A component returns no Spec when this stack goes
// without it.
func (s *Stack) description() []func() ([]supervise.Spec, error) {
	return []func() ([]supervise.Spec, error){
		s.postgres,
		s.redis,   // helix-authz's rate-limit counters
		s.mailpit, // helix-authz's mails
		s.jaeger,  // the daemons' and Envoy's spans, from their start
		s.authz,
		s.xds,
		s.workers, // register with helix-xds; started before Envoy, so its first config has them
		s.envoy,
		s.alertmanager,
		s.prometheus,
	}
}

// Start prepares the state (PKI, keys, config files) and starts every
// process in order, each ready before the next. On error, what started
// is left for Close, which the caller always runs.
func (s *Stack) Start(ctx context.Context) error {
	for _, d := range []string{s.opts.Dir, s.LogDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("stack: %w", err)
		}
	}
	// Others may pass through (Postgres runs as "postgres" under root)
	// but not list it; the secrets in it are 0600, the PKI folder 0700.
	if err := os.Chmod(s.opts.Dir, 0o711); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	g, err := supervise.New(supervise.Options{
		LogDir: s.LogDir(), Restart: s.opts.Restart, PIDFile: s.pidFile(), Logger: s.opts.Logger,
	})
	if err != nil {
		return err
	}
	s.group = g
	if err := s.prepare(ctx); err != nil {
		return err
	}
	for _, component := range s.description() {
		specs, err := component()
		if err != nil {
			return err
		}
		for _, spec := range specs {
			spec.Args = append(spec.Args, s.opts.Args[spec.Name]...)
			s.specs[spec.Name] = spec
			s.opts.Logger.Info("starting", "process", spec.Name)
			if _, err := g.Start(ctx, spec); err != nil {
				return err
			}
		}
	}
	return nil
}

// Wait returns when a process died (without Restart) or was given up on
// (with it), with an error naming it and the end of its log, or when ctx
// ends (nil).
func (s *Stack) Wait(ctx context.Context) error {
	select {
	case err := <-s.group.Failed():
		return err
	case <-ctx.Done():
		return nil
	}
}

// Failed delivers what Wait returns, for a caller that waits on more.
func (s *Stack) Failed() <-chan error { return s.group.Failed() }

// Close stops every process, newest first.
func (s *Stack) Close() {
	if s.group != nil {
		s.group.Close()
	}
	s.removeEnvoySharedMemory()
}

// Proc is the named process's current run, or nil.
func (s *Stack) Proc(name string) *supervise.Proc {
	if s.group == nil {
		return nil
	}
	return s.group.Proc(name)
}

// Procs are the running processes in start order.
func (s *Stack) Procs() []*supervise.Proc {
	if s.group == nil {
		return nil
	}
	return s.group.Procs()
}

// StopProcess stops one process (a test's outage); StartProcess starts it
// again as it was, and waits until it is ready.
func (s *Stack) StopProcess(name string) error { return s.group.Stop(name) }

// KillProcess ends a process with SIGKILL (a test's crash), without
// reporting or restarting it.
func (s *Stack) KillProcess(name string) error { return s.group.Kill(name) }

// CrashProcess kills a process with SIGKILL and starts it again at once,
// waiting until it is ready (supervise.Group.Crash): the chaos suite's
// fault.
func (s *Stack) CrashProcess(ctx context.Context, name string) (*supervise.Proc, error) {
	return s.group.Crash(ctx, name)
}

// Run starts one more process in the stack's group (a test's own
// Prometheus, say) and waits until it is ready; it is stopped with the
// stack and StartProcess can start it again.
func (s *Stack) Run(ctx context.Context, spec supervise.Spec) error {
	s.specs[spec.Name] = spec
	_, err := s.group.Start(ctx, spec)
	return err
}

// StartProcess starts a process StopProcess stopped.
func (s *Stack) StartProcess(ctx context.Context, name string) error {
	spec, ok := s.specs[name]
	if !ok {
		return fmt.Errorf("stack: no process %s", name)
	}
	_, err := s.group.Start(ctx, spec)
	return err
}

// SetDatabaseURL points helix-authz (every replica) at another Postgres
// from its next start (StopProcess, then StartProcess): the restore
// drill's restored server (tests/drill).
func (s *Stack) SetDatabaseURL(dsn string) {
	s.DatabaseURL = dsn
	for name, spec := range s.specs {
		if name != Authz && !strings.HasPrefix(name, Authz+"-") {
			continue
		}
		env := make([]string, 0, len(spec.Env))
		for _, kv := range spec.Env {
			if !strings.HasPrefix(kv, "HELIX_DATABASE_URL=") {
				env = append(env, kv)
			}
		}
		spec.Env = append(env, "HELIX_DATABASE_URL="+dsn)
		s.specs[name] = spec
	}
}

// Dir is the state folder; LogDir holds each process's log.
func (s *Stack) Dir() string    { return s.opts.Dir }
func (s *Stack) LogDir() string { return filepath.Join(s.opts.Dir, "logs") }

// Root is the repository.
func (s *Stack) Root() string { return s.opts.Root }

// Workers are the workers as described (defaults filled in).
func (s *Stack) Workers() []Worker { return s.opts.Workers }

// ConfigPath is helix-xds's config file (edits are hot-reloaded).
func (s *Stack) ConfigPath() string { return filepath.Join(s.opts.Dir, "gateway.yaml") }

// PKIDir holds the development PKI.
func (s *Stack) PKIDir() string { return filepath.Join(s.opts.Dir, "pki") }

// Cert returns a PKI certificate's files by its name in pki.LocalSpecs.
func (s *Stack) Cert(name string) (certFile, keyFile string) { return pki.Files(s.PKIDir(), name) }

// CAFile is the development CA's certificate.
func (s *Stack) CAFile() string {
	c, _ := pki.Files(s.PKIDir(), pki.CAName)
	return c
}

func (s *Stack) pidFile() string { return filepath.Join(s.opts.Dir, "run.pids") }

// RemoveLeftovers stops what a run on the same Dir killed with SIGKILL
// left behind (processes whose command line names Dir).
func (s *Stack) RemoveLeftovers() error {
	return supervise.RemoveLeftovers(s.pidFile(), s.opts.Dir+string(filepath.Separator), s.opts.Logger)
}

func (s *Stack) bin(name string) string { return filepath.Join(s.opts.BinDir, name) }

// Addr is host:port on 127.0.0.1, where every process listens.
func Addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// modelsDir is the sample model repository.
func (s *Stack) modelsDir() string { return filepath.Join(s.opts.Root, "models") }

// fillPlaceholders replaces ${NAME} in b from vars and refuses leftovers.
func fillPlaceholders(what string, b []byte, vars map[string]string) ([]byte, error) {
	out := string(b)
	for k, v := range vars {
		out = strings.ReplaceAll(out, "${"+k+"}", v)
	}
	if i := strings.Index(out, "${"); i >= 0 {
		end := strings.IndexByte(out[i:], '}')
		if end < 0 {
			end = len(out) - i - 1
		}
		return nil, fmt.Errorf("stack: %s has a placeholder the launcher does not fill: %s", what, out[i:i+end+1])
	}
	return []byte(out), nil
}
