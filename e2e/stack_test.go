package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/samplemodel"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/supervise"
	"github.com/helixflow/helixflow/workers/registration"
)

// stack is the running system, as a client and an operator see it: the
// launcher's stack (internal/stack) with the test's gateway config,
// clients and worker registration.
type stack struct {
	st       *helixstack.Stack
	caFile   string // the stack's development CA
	caPool   *x509.CertPool
	envoy    envoyAdmin
	gateway  string // host:port of Envoy's TLS listener (gRPC and REST)
	issuer   string // helix-authz's OAuth2 base URL
	xdsURL   string // helix-xds status/metrics base URL
	adminEnv []string
	// clients by name, all with the model list "*": "all" has models:infer
	// models:read, "mlp-only" models:mlp:infer, "infer-only" models:infer.
	clients map[string]client

	// The gateway config file and what it says, for reload tests.
	cfgPath string
	cfg     gatewayConfig
	// register is the worker's registration; stopRegistration ends it
	// (the worker deregisters). Unset when the worker registers itself.
	register         registration.Config
	stopRegistration func()

	xdsAddr string
	// workerCert is the client certificate (identity) of the stack's
	// first worker, presented to helix-xds.
	workerCert envoytest.Pair
	// workers started so far; workers[0] is the stack's own, serving simple.
	workers []*worker
	// gatewayTLS is Envoy's listener certificate, in a folder Envoy
	// watches (rotated by TestResilience).
	gatewayTLS *secretDir
}

// envoyAdmin reaches the stack's Envoy admin interface.
type envoyAdmin struct{ st *helixstack.Stack }

// Admin GETs an admin path ("/config_dump", "/clusters").
func (e envoyAdmin) Admin(ctx context.Context, path string) (string, error) {
	return e.st.EnvoyAdmin(ctx, path)
}

// stackOptions choose how the stack's worker joins.
type stackOptions struct {
	// selfRegister starts the worker with helix-worker's --xds-address
	// flags, so it registers itself over mTLS; otherwise the test registers
	// on its behalf (s.register), which lets a test end and resume it.
	selfRegister bool
	// tracing runs the stack's Jaeger, every daemon's spans sent to it,
	// and the gateway config's tracing section sampling every request.
	tracing bool
}

type client struct{ id, secret, token string }

const sampleModel = samplemodel.Name

func startStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	s := &stack{clients: map[string]client{}}
	var cfg gatewayConfig
	st := launch(t, helixstack.Options{
		NodeID:  "e2e-envoy",
		Workers: []helixstack.Worker{{Name: "helix-worker", Models: []string{sampleModel}, NoRegister: !opts.selfRegister}},
		Args:    map[string][]string{helixstack.XDS: {"--lease-ttl=5s", "--log-level=debug"}},
		Tracing: opts.tracing,
		GatewayConfig: func(st *helixstack.Stack) ([]byte, error) {
			// Envoy's listener certificate, in a folder it watches,
			// rotated by TestResilience.
			crt, key := st.Cert(pki.EnvoyServer)
			s.gatewayTLS = newSecretDir(t, st.Dir(), envoytest.Pair{CertFile: crt, KeyFile: key})
			cfg = gatewayConfig{
				listen: st.Ports.Gateway, listenerCert: s.gatewayTLS.pair(), listenerWatchDir: s.gatewayTLS.dir,
				authzPort: st.Ports.ExtAuthz, publicPort: st.Ports.Authz, ca: st.CAFile(), envoyClient: pair(st, pki.EnvoyAuthzClient),
				rateLimits: true, workersTLS: true,
			}
			y := gatewayYAML(cfg)
			if opts.tracing {
				y = fmt.Appendf(y, "tracing:\n  collector: %s\n  sampling: 1\n", st.OTLPEndpoint())
			}
			return y, nil
		},
	})
	s.attach(t, st)
	s.cfgPath, s.cfg = st.ConfigPath(), cfg
	s.workers = append(s.workers, s.newWorker(t, 0))
	s.createClients(t, "e2e-", map[string][2]string{
		"all": {"models:infer,models:read", "standard"}, "mlp-only": {"models:mlp:infer", "standard"},
		// What ModelStreamInfer needs (models:infer on every model) and
		// nothing more.
		"infer-only": {"models:infer", "standard"},
		// On the free plan (5 requests per second per model).
		"free": {"models:infer,models:read", "free"},
	})
	if !opts.selfRegister {
		// The test registers the way a worker does, with its client
		// certificate; helix-xds turns it into an endpoint.
		w := s.workers[0]
		s.register = registration.Config{
			XDSAddress: s.xdsAddr, TLS: s.clientTLS(t, s.workerCert), WorkerID: "e2e-worker-1", Address: "127.0.0.1",
			GRPCPort: w.grpcPort, HTTPPort: w.httpPort,
			Models: func(context.Context) ([]registration.Model, error) {
				return []registration.Model{{Name: sampleModel, Versions: []string{"1"}, Ready: true}}, nil
			},
			Ready: func() bool { return true },
		}
		s.startRegistration(t)
	}
	return s
}

// launch starts a stack of the launcher in a fresh state folder, with the
// binaries TestMain built; a process that dies fails the test, and every
// process's log is printed when the test failed.
func launch(t *testing.T, opts helixstack.Options) *helixstack.Stack {
	t.Helper()
	envoytest.Binary(t) // skip (or fail with CI=true) before starting anything
	if _, err := os.Stat(filepath.Join(repoRoot, "models", sampleModel, "config.pbtxt")); err != nil {
		t.Fatalf("the sample models are missing (%v): run `make models` first", err)
	}
	// Not t.TempDir: Postgres runs as "postgres" under root and must pass
	// through every folder above its data.
	dir, err := os.MkdirTemp("", "helix-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	opts.Root, opts.Dir, opts.BinDir = repoRoot, dir, binDir
	if opts.EnvoyBin, err = envoytest.Find(); err != nil {
		t.Fatal(err)
	}
	st, err := helixstack.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var watching sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		watching.Wait()
		if t.Failed() {
			for _, p := range st.Procs() {
				t.Logf("--- %s log (%s):\n%s", p.Name(), p.LogPath(), p.Tail(150))
			}
		}
		st.Close()
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := st.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// In a test, a process that dies is a failure (those the test stops
	// or kills itself are not reported).
	watching.Go(func() {
		select {
		case err := <-st.Failed():
			t.Errorf("%v", err)
		case <-done:
		}
	})
	return st
}

// attach fills in what the tests read from the launched stack.
func (s *stack) attach(t *testing.T, st *helixstack.Stack) {
	t.Helper()
	pool, err := st.CAPool()
	if err != nil {
		t.Fatal(err)
	}
	s.st, s.caFile, s.caPool, s.envoy = st, st.CAFile(), pool, envoyAdmin{st}
	s.gateway, s.issuer, s.xdsURL = st.GatewayAddr(), st.Issuer, st.XDSStatusURL()
	wc, wk := st.WorkerCert(0)
	s.xdsAddr, s.workerCert = addr(st.Ports.XDS), envoytest.Pair{CertFile: wc, KeyFile: wk}
	s.adminEnv = []string{"HELIX_ADMIN_URL=" + st.AdminURL(), "HELIX_ADMIN_TOKEN=" + st.AdminToken}
}

// createClients makes the named clients with helixctl, as an operator
// would: name -> {scopes, plan}, every model; each gets a token.
func (s *stack) createClients(t *testing.T, prefix string, specs map[string][2]string) {
	t.Helper()
	for name, spec := range specs {
		out := runCmd(t, s.adminEnv, bin("helixctl"), "clients", "create", "--name", prefix+name,
			"--scope", spec[0], "--model", "*", "--plan", spec[1], "--output", "json")
		var c struct {
			ID     string `json:"client_id"`
			Secret string `json:"client_secret"`
		}
		if err := json.Unmarshal(out, &c); err != nil || c.ID == "" || c.Secret == "" {
			t.Fatalf("helixctl clients create: %v in %s", err, out)
		}
		s.clients[name] = client{id: c.ID, secret: c.Secret, token: s.token(t, c.ID, c.Secret)}
	}
}

// pair is a development PKI certificate's files.
func pair(st *helixstack.Stack, name string) envoytest.Pair {
	c, k := st.Cert(name)
	return envoytest.Pair{CertFile: c, KeyFile: k}
}

// issue makes another certificate from the stack's CA: a server
// certificate for 127.0.0.1 and localhost.
func (s *stack) issue(t *testing.T, name string) envoytest.Pair {
	t.Helper()
	spec := pki.Spec{Name: name, CommonName: name, DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.ServerAuth}
	if _, err := pki.Init(context.Background(), pki.Options{Dir: s.st.PKIDir()}, []pki.Spec{spec}); err != nil {
		t.Fatal(err)
	}
	return pair(s.st, name)
}

// proc is the named process's current run (nil once stopped).
func (s *stack) proc(name string) *supervise.Proc { return s.st.Proc(name) }

func (s *stack) clientTLS(t *testing.T, p envoytest.Pair) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: s.caPool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// token gets a client-credentials token from helix-authz.
func (s *stack) token(t *testing.T, id, secret string) string {
	t.Helper()
	tok, err := s.st.Token(t.Context(), id, secret)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

func httpGet(ctx context.Context, c *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return b, nil
}

// startRegistration keeps the worker registered until stopRegistration
// (or the end of the test).
func (s *stack) startRegistration(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- registration.Run(ctx, s.register) }()
	var once sync.Once
	s.stopRegistration = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker registration: %v", err)
			}
		})
	}
	t.Cleanup(s.stopRegistration)
}

// stopXDS stops helix-xds with SIGTERM, as an orchestrator would, and
// returns how long it took.
func (s *stack) stopXDS(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	if err := s.st.StopProcess(helixstack.XDS); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// restartXDS starts helix-xds again as it was (same ports, same config
// file) and waits until it answers.
func (s *stack) restartXDS(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.st.StartProcess(ctx, helixstack.XDS); err != nil {
		t.Fatal(err)
	}
}

// stopRedis and startRedis make a Redis outage (same port, counters lost).
func (s *stack) stopRedis(t *testing.T) {
	t.Helper()
	if err := s.st.StopProcess(helixstack.Redis); err != nil {
		t.Fatal(err)
	}
}

// startRedis starts Redis unless it runs.
func (s *stack) startRedis(t *testing.T) {
	t.Helper()
	if s.proc(helixstack.Redis) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.st.StartProcess(ctx, helixstack.Redis); err != nil {
		t.Fatal(err)
	}
}
