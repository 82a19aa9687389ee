package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/bench/internal/profiling"
	"github.com/helixflow/helixflow/envoy/bootstrap"
	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/samplemodel"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/supervise"
	"github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/xds/config"
)

// Plans of the bench's gateway config: the local stack's two, and "bench",
// whose limit no run can reach, for the client perf_analyzer presents.
const (
	benchPlan     = "bench"
	benchPlanRPS  = 1_000_000
	tokenLifetime = time.Hour // helix-authz's maximum; outlives any run
)

// stack is everything the benchmark runs: internal/stack's stack (the
// launcher make run and the e2e tests use) with one helix-worker serving
// simple (the measured one, registering itself) and one serving mlp
// (registered and deregistered by the convergence trials), both plaintext
// for the direct path; and, as the bench's own additions, the TLS-only
// Envoy with its in-process ADS server.
type stack struct {
	root, dir        string
	envoyBin         string
	envoyConcurrency int
	// binDir replaces bin/ (--profile: helix-authz with a pprof listener
	// on pprofAddr); "" is bin/.
	binDir, pprofAddr string
	// tracing runs Jaeger with the stack, every daemon sending it spans
	// (the tracing part switches Envoy's tracing in the gateway config).
	tracing bool

	st     *helixstack.Stack
	caPool *x509.CertPool
	ads    *tlsOnlyADS

	worker, mlp                   *proc
	workerGRPC, workerHTTP        int
	mlpGRPC, mlpHTTP              int
	authz, redis                  *proc
	xdsAddr                       string
	issuer                        string
	admin                         *admin.Client
	fullEnvoy, tlsEnvoy           *envoy
	fullAddr, tlsAddr             string
	cfgPath                       string
	cfg                           *config.Config
	clientID, clientSecret        string
	directConn, tlsConn, fullConn *grpc.ClientConn
}

// Process names of the bench's workers and its TLS-only Envoy (the report's
// CPU columns name them).
const (
	procWorker    = "helix-worker"
	procWorkerMLP = "helix-worker-mlp"
	procEnvoyTLS  = "envoy-tls"
)

// certs returns the certificate and key files of a local PKI name.
func (s *stack) certs(name string) (cert, key string) { return s.st.Cert(name) }

func (s *stack) caFile() string { return s.st.CAFile() }

// close stops every process, newest first (workers before helix-xds and
// Envoy), then the in-process ADS server.
func (s *stack) close() {
	for _, c := range []*grpc.ClientConn{s.directConn, s.tlsConn, s.fullConn} {
		if c != nil {
			_ = c.Close()
		}
	}
	if s.st != nil {
		s.st.Close()
	}
	if s.ads != nil {
		s.ads.stop()
	}
}

// startStack starts everything; on error, what started is left for
// close, which the caller always runs.
func startStack(ctx context.Context, s *stack) error {
	mlpRepo := filepath.Join(s.dir, "mlp-repository")
	if err := os.MkdirAll(mlpRepo, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(filepath.Join(s.root, "models", "mlp"), filepath.Join(mlpRepo, "mlp")); err != nil {
		return err
	}
	warn := []string{"--log-level=warn"}
	var err error
	s.st, err = helixstack.New(helixstack.Options{
		Root: s.root, Dir: filepath.Join(s.dir, "stack"), EnvoyBin: s.envoyBin, BinDir: s.binDir,
		Workers: []helixstack.Worker{
			{Name: procWorker, Models: []string{"simple"}, Plaintext: true, Args: warn},
			{Name: procWorkerMLP, Repository: mlpRepo, Models: []string{"mlp"}, Plaintext: true, NoRegister: true, Args: warn},
		},
		Args: map[string][]string{
			helixstack.Authz: {fmt.Sprintf("--token-lifetime=%s", tokenLifetime), "--log-level=warn"},
			// Publish at once; the bench waits for its worker itself.
			helixstack.XDS: {"--startup-grace=0s"},
		},
		GatewayConfig:    func(st *helixstack.Stack) ([]byte, error) { return []byte(gatewayYAML(st)), nil },
		Tracing:          s.tracing,
		NodeID:           "bench-envoy-full",
		EnvoyConcurrency: s.envoyConcurrency,
		// The access log is formatted and written, but no disk is in the
		// measurement.
		EnvoyDiscardStdout: true,
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	p := s.st.Ports
	s.workerHTTP, s.workerGRPC = p.Workers[0].HTTP, p.Workers[0].GRPC
	s.mlpHTTP, s.mlpGRPC = p.Workers[1].HTTP, p.Workers[1].GRPC
	s.xdsAddr, s.issuer = addr(p.XDS), s.st.Issuer
	s.fullAddr, s.cfgPath = s.st.GatewayAddr(), s.st.ConfigPath()
	logf("starting Postgres, Redis, helix-authz (rate limits in Check, counters in Redis), helix-xds, the workers (simple, registering itself; mlp, for the convergence trials) and the full chain's Envoy")
	if err := s.st.Start(ctx); err != nil {
		return err
	}
	s.worker, s.mlp = s.st.Proc(procWorker), s.st.Proc(procWorkerMLP)
	s.authz, s.redis = s.st.Proc(helixstack.Authz), s.st.Proc(helixstack.Redis)
	s.fullEnvoy = &envoy{proc: s.st.Proc(helixstack.Envoy), adminURL: s.st.EnvoyAdminURL}
	if s.caPool, err = s.st.CAPool(); err != nil {
		return err
	}
	if s.admin, err = admin.NewClient(s.st.AdminURL(), s.st.AdminToken, nil); err != nil {
		return err
	}
	if s.cfg, err = config.Load(s.cfgPath); err != nil {
		return fmt.Errorf("the bench's gateway config: %w", err)
	}

	// The TLS-only Envoy: the translator's resources for the same config
	// and worker, minus ext_authz and the rate-limit filter, from an ADS
	// server in this process.
	var pp ports
	adsPort, err := pp.pick()
	if err != nil {
		return err
	}
	tlsPort, err := pp.pick()
	if err != nil {
		return err
	}
	s.tlsAddr = addr(tlsPort)
	logf("starting the TLS-only Envoy and its ADS server")
	if s.ads, err = startTLSOnlyADS(ctx, s, adsPort, tlsPort); err != nil {
		return err
	}
	if s.tlsEnvoy, err = s.startEnvoy(ctx, procEnvoyTLS, "bench-envoy-tls", tlsOnlyNodeCluster, s.ads.addr); err != nil {
		return err
	}

	// The client perf_analyzer is: every model, plan bench.
	name, plan := "bench-gateway", benchPlan
	scopes, models := []string{"models:infer", "models:read"}, []string{"*"}
	c, err := s.admin.CreateClient(ctx, admin.ClientRequest{Name: &name, Scopes: &scopes, Models: &models, Plan: &plan})
	if err != nil {
		return fmt.Errorf("helix-authz: create client: %w", err)
	}
	s.clientID, s.clientSecret = c.ClientID, c.ClientSecret

	// Ready: both Envoys are live and every path answers a ModelInfer
	// (the full chain's helix-authz reads the bench plan from the same
	// gateway config at start).
	return s.connect(ctx)
}

// authzMetricsURL is helix-authz's /metrics.
func (s *stack) authzMetricsURL() string {
	return "http://" + addr(s.st.Ports.AuthzMetrics) + "/metrics"
}

// profiled makes the stack run helix-authz built with a pprof listener
// (bench/internal/profiling): bin/ with that helix-authz instead, and the
// listener's address in the environment the stack's processes inherit
// (only that build reads it).
func (s *stack) profiled(ctx context.Context) error {
	logf("building .tools/helix-authz-pprof (helix-authz with a pprof listener)")
	bin, err := profiling.BuildAuthz(ctx, s.root, s.dir)
	if err != nil {
		return err
	}
	s.binDir = filepath.Join(s.dir, "bin")
	if err := os.MkdirAll(s.binDir, 0o755); err != nil {
		return err
	}
	for _, b := range []string{"helix-worker", "helix-xds"} {
		if err := os.Symlink(filepath.Join(s.root, "bin", b), filepath.Join(s.binDir, b)); err != nil {
			return err
		}
	}
	if err := os.Symlink(bin, filepath.Join(s.binDir, "helix-authz")); err != nil {
		return err
	}
	var pp ports
	port, err := pp.pick()
	if err != nil {
		return err
	}
	s.pprofAddr = addr(port)
	return os.Setenv(profiling.AddrEnv, s.pprofAddr)
}

// profile captures a CPU profile of helix-authz over d into
// o.profile/name when profiling and when is true; the channel gives the
// capture's error once it is over (at once, nil, otherwise).
func (s *stack) profile(ctx context.Context, o *options, when bool, name string, d time.Duration) <-chan error {
	done := make(chan error, 1)
	if o.profile == "" || !when {
		done <- nil
		return done
	}
	path := filepath.Join(o.profile, name)
	logf("profiling helix-authz for %v into %s", d, path)
	go func() { done <- profiling.Capture(ctx, s.pprofAddr, d, path) }()
	return done
}

// connect opens one gRPC connection per path and waits until each
// answers ModelInfer on simple; the full chain must refuse a request
// without a token, the TLS-only Envoy must not ask for one.
func (s *stack) connect(ctx context.Context) error {
	var err error
	if s.directConn, err = grpc.NewClient(addr(s.workerGRPC), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return err
	}
	tc := credentials.NewTLS(&tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12})
	if s.tlsConn, err = grpc.NewClient(s.tlsAddr, grpc.WithTransportCredentials(tc)); err != nil {
		return err
	}
	if s.fullConn, err = grpc.NewClient(s.fullAddr, grpc.WithTransportCredentials(tc)); err != nil {
		return err
	}
	tok, err := s.token(ctx)
	if err != nil {
		return err
	}
	for _, c := range []struct {
		what  string
		conn  *grpc.ClientConn
		p     *proc
		token string
	}{
		{"direct to helix-worker", s.directConn, s.worker, ""},
		{"through the TLS-only Envoy", s.tlsConn, s.tlsEnvoy.proc, ""},
		{"through the full chain", s.fullConn, s.fullEnvoy.proc, tok},
	} {
		cl := inference.NewGRPCInferenceServiceClient(c.conn)
		if err := waitFor(ctx, "ModelInfer "+c.what, 60*time.Second, c.p, func(ctx context.Context) error {
			if c.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
			}
			_, err := cl.ModelInfer(ctx, samplemodel.InferRequest())
			return err
		}); err != nil {
			return err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = inference.NewGRPCInferenceServiceClient(s.fullConn).ModelInfer(cctx, samplemodel.InferRequest())
	if status.Code(err) != codes.Unauthenticated {
		return fmt.Errorf("full chain without a token: %v, want UNAUTHENTICATED (is ext_authz in the chain?)", err)
	}
	return nil
}

// token gets a client-credentials token for the bench client. A fresh
// helix-authz may answer 503 for a moment while it makes its first
// signing key; that is retried for 20 s.
func (s *stack) token(ctx context.Context) (string, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		tok, err := s.tokenOnce(ctx)
		if err == nil {
			return tok, nil
		}
		if !strings.Contains(err.Error(), "503") || time.Now().After(deadline) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *stack) tokenOnce(ctx context.Context) (string, error) {
	tok, err := s.st.Token(ctx, s.clientID, s.clientSecret)
	if err != nil {
		return "", err
	}
	if tok.Lifetime < 10*time.Minute {
		return "", fmt.Errorf("token lives %v; the bench wants at least 10 minutes (helix-authz --token-lifetime)", tok.Lifetime)
	}
	return tok.AccessToken, nil
}

// envoy is a running Envoy and its admin interface.
type envoy struct {
	*proc
	adminURL string
}

// startEnvoy writes a bootstrap (envoy/bootstrap, what `helix-xds
// bootstrap` writes) for the ADS server at xdsAddr and starts Envoy on it
// in the stack's process group, until LIVE. Access logs go to standard
// output, which is discarded.
func (s *stack) startEnvoy(ctx context.Context, name, nodeID, nodeCluster, xdsAddr string) (*envoy, error) {
	cert, key := s.certs(pki.EnvoyXDSClient)
	b, err := bootstrap.Render(bootstrap.Config{
		NodeID: nodeID, NodeCluster: nodeCluster, XDSAddress: xdsAddr,
		XDSTLS:       &bootstrap.TLS{CAFile: s.caFile(), CertFile: cert, KeyFile: key, ServerName: "helix-xds"},
		AdminAddress: "127.0.0.1:0",
	})
	if err != nil {
		return nil, err
	}
	bpath := filepath.Join(s.dir, name+".yaml")
	if err := os.WriteFile(bpath, b, 0o600); err != nil {
		return nil, err
	}
	adminPath := filepath.Join(s.dir, name+".admin-address")
	e := &envoy{}
	err = s.st.Run(ctx, supervise.Spec{
		Name: name, Path: s.envoyBin, DiscardStdout: true,
		Args: []string{"-c", bpath, "--admin-address-path", adminPath, "--disable-hot-restart", "--concurrency", fmt.Sprint(s.envoyConcurrency)},
		Ready: func(ctx context.Context) error {
			b, err := os.ReadFile(adminPath)
			if err != nil || strings.TrimSpace(string(b)) == "" {
				return errors.New("admin address not written yet")
			}
			e.adminURL = "http://" + strings.TrimSpace(string(b))
			body, err := httpGet(ctx, http.DefaultClient, e.adminURL+"/ready")
			if err == nil && strings.TrimSpace(string(body)) != "LIVE" {
				err = fmt.Errorf("state %q", strings.TrimSpace(string(body)))
			}
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	e.proc = s.st.Proc(name)
	return e, nil
}

// gatewayYAML is the bench's gateway config: deploy/local/gateway.yaml's
// settings with this run's ports and PKI, and the bench plan.
func gatewayYAML(st *helixstack.Stack) string {
	lc, lk := st.Cert(pki.EnvoyServer)
	ac, ak := st.Cert(pki.EnvoyAuthzClient)
	return fmt.Sprintf(`# Written by bench/gateway for one run.
listener:
  address: 127.0.0.1
  port: %d
  tls:
    cert_file: %s
    key_file: %s
authz:
  address: 127.0.0.1:%d
  timeout: 1s
  tls:
    ca_file: %s
    cert_file: %s
    key_file: %s
    server_name: helix-authz
ratelimit:
  timeout: 100ms
  failure_mode: open
  default_plan: free
plans:
  free:
    requests_per_second: 5
  standard:
    requests_per_second: 1000
  %s:
    requests_per_second: %d
health_check:
  interval: 2s
  no_traffic_interval: 5s
# Every request comes from one load generator on loopback: the per-source
# limit stays in the chain (its cost is measured) with a rate it never hits.
source_limit:
  requests_per_second: 1000000
  burst: 2000000
`, st.Ports.Gateway, lc, lk, st.Ports.ExtAuthz, st.CAFile(), ac, ak, benchPlan, benchPlanRPS)
}

// mlpRequest is a ModelInfer on mlp (one FP32 [1,256] input, zeros).
func mlpRequest() *inference.ModelInferRequest {
	return &inference.ModelInferRequest{
		ModelName:        "mlp",
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 256}}},
		RawInputContents: [][]byte{make([]byte, 4*256)},
	}
}
