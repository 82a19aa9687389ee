package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
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

	"github.com/helixflow/helixflow/bench/internal/benchproc"
	"github.com/helixflow/helixflow/envoy/bootstrap"
	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/pki"
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

// stack is everything the benchmark runs: one helix-worker serving
// simple (the measured one), one serving mlp (registered and deregistered
// by the convergence trials), the full chain (Postgres, helix-authz, Redis,
// helix-ratelimit, helix-xds and its Envoy) and the TLS-only Envoy with
// its in-process ADS server.
type stack struct {
	root, dir, pkiDir string
	caPool            *x509.CertPool
	envoyBin          string
	envoyConcurrency  int

	procs []*proc // in start order; stopped in reverse
	pg    *pgtest.Server
	ads   *tlsOnlyADS

	worker, mlp                   *proc
	workerGRPC, workerHTTP        int
	mlpGRPC, mlpHTTP              int
	authz, redis, ratelimit       *proc
	xds                           *proc
	xdsAddr                       string
	issuer                        string
	admin                         *admin.Client
	fullEnvoy, tlsEnvoy           *envoy
	fullAddr, tlsAddr             string
	cfgPath                       string
	cfg                           *config.Config
	clientID, clientSecret        string
	tokenHTTP                     *http.Client
	rlDebugURL                    string
	directConn, tlsConn, fullConn *grpc.ClientConn
}

// certs returns the certificate and key files of a local PKI name.
func (s *stack) certs(name string) (cert, key string) { return pki.Files(s.pkiDir, name) }

func (s *stack) caFile() string {
	c, _ := pki.Files(s.pkiDir, pki.CAName)
	return c
}

func (s *stack) start(ctx context.Context, name string, discardStdout bool, env []string, bin string, args ...string) (*proc, error) {
	p, err := benchproc.Start(name, filepath.Join(s.dir, name+".log"), discardStdout, env, bin, args...)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	return p, nil
}

func (s *stack) bin(name string) string { return filepath.Join(s.root, "bin", name) }

// close stops every process, newest first (workers before helix-xds and
// Envoy), then the in-process ADS server and Postgres.
func (s *stack) close() {
	for _, c := range []*grpc.ClientConn{s.directConn, s.tlsConn, s.fullConn} {
		if c != nil {
			_ = c.Close()
		}
	}
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop()
	}
	if s.ads != nil {
		s.ads.stop()
	}
	if s.pg != nil {
		_ = s.pg.Stop()
	}
}

// startStack starts everything; on error, what started is left for
// close, which the caller always runs.
func startStack(ctx context.Context, s *stack) error {
	var pp ports
	pick := func(n int) ([]int, error) {
		out := make([]int, n)
		for i := range out {
			p, err := pp.pick()
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	}

	// Development PKI (internal/pki, as `helixctl pki init` makes it).
	s.pkiDir = filepath.Join(s.dir, "pki")
	if _, err := pki.Init(ctx, pki.Options{Dir: s.pkiDir}, pki.LocalSpecs()); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	pemCA, err := os.ReadFile(s.caFile())
	if err != nil {
		return err
	}
	s.caPool = x509.NewCertPool()
	if !s.caPool.AppendCertsFromPEM(pemCA) {
		return errors.New("pki: no certificate in the CA file")
	}
	s.tokenHTTP = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12},
	}}

	// The workers load their models first: that takes longest.
	ps, err := pick(6)
	if err != nil {
		return err
	}
	s.workerHTTP, s.workerGRPC, s.mlpHTTP, s.mlpGRPC = ps[0], ps[1], ps[3], ps[4]
	xp, err := pick(2)
	if err != nil {
		return err
	}
	s.xdsAddr = addr(xp[0])
	xdsStatus := "http://" + addr(xp[1])
	wcert, wkey := s.certs(pki.WorkerXDSClient)
	logf("starting helix-worker (simple, registers itself with helix-xds) and helix-worker (mlp, for the convergence trials)")
	s.worker, err = s.start(ctx, "helix-worker", false, nil, s.bin("helix-worker"),
		"--id=bench-worker-simple", "--model-repository="+filepath.Join(s.root, "models"),
		"--model-control-mode=explicit", "--load-model=simple",
		"--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
		fmt.Sprintf("--http-port=%d", ps[0]), fmt.Sprintf("--grpc-port=%d", ps[1]), fmt.Sprintf("--metrics-port=%d", ps[2]),
		"--log-level=warn",
		"--xds-address="+s.xdsAddr, "--xds-ca-file="+s.caFile(), "--xds-cert-file="+wcert, "--xds-key-file="+wkey,
		"--advertise-address=127.0.0.1")
	if err != nil {
		return err
	}
	mlpRepo := filepath.Join(s.dir, "mlp-repository")
	if err := os.MkdirAll(mlpRepo, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(filepath.Join(s.root, "models", "mlp"), filepath.Join(mlpRepo, "mlp")); err != nil {
		return err
	}
	s.mlp, err = s.start(ctx, "helix-worker-mlp", false, nil, s.bin("helix-worker"),
		"--id=bench-worker-mlp", "--model-repository="+mlpRepo, "--model-control-mode=explicit", "--load-model=mlp",
		"--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
		fmt.Sprintf("--http-port=%d", ps[3]), fmt.Sprintf("--grpc-port=%d", ps[4]), fmt.Sprintf("--metrics-port=%d", ps[5]),
		"--log-level=warn")
	if err != nil {
		return err
	}

	// Postgres and helix-authz: TLS on every listener, mTLS from Envoy on
	// ext_authz, as in make run.
	logf("starting Postgres, helix-authz, Redis, helix-ratelimit, helix-xds")
	s.pg, err = pgtest.StartProcess(filepath.Join(s.dir, "pg"))
	if err != nil {
		return err
	}
	dsn, err := pgtest.CreateDatabase(ctx, s.pg.DSN(), "helix_authz")
	if err != nil {
		return err
	}
	ap, err := pick(4)
	if err != nil {
		return err
	}
	s.issuer = "https://" + addr(ap[0])
	kek := filepath.Join(s.dir, "kek")
	if err := os.WriteFile(kek, []byte(randomHex(32)), 0o600); err != nil {
		return err
	}
	adminToken := randomHex(32)
	acert, akey := s.certs(pki.AuthzServer)
	s.authz, err = s.start(ctx, "helix-authz", false, []string{"HELIX_ADMIN_TOKEN=" + adminToken}, s.bin("helix-authz"),
		"--database-url="+dsn, "--kek-file="+kek, "--issuer="+s.issuer,
		fmt.Sprintf("--token-lifetime=%s", tokenLifetime),
		"--http-listen="+addr(ap[0]), "--grpc-listen="+addr(ap[1]), "--admin-listen="+addr(ap[2]),
		"--metrics-listen="+addr(ap[3]),
		"--tls-cert-file="+acert, "--tls-key-file="+akey, "--client-ca-file="+s.caFile(), "--log-level=warn")
	if err != nil {
		return err
	}
	if s.admin, err = admin.NewClient("http://"+addr(ap[2]), adminToken, nil); err != nil {
		return err
	}

	// Redis: counters only, nothing saved.
	rp, err := pick(5)
	if err != nil {
		return err
	}
	redisDir := filepath.Join(s.dir, "redis")
	if err := os.MkdirAll(redisDir, 0o700); err != nil {
		return err
	}
	s.redis, err = s.start(ctx, "redis", false, nil, "redis-server", "--bind", "127.0.0.1",
		"--port", fmt.Sprint(rp[0]), "--save", "", "--appendonly", "no", "--dir", redisDir, "--protected-mode", "yes")
	if err != nil {
		return err
	}

	// The gateway config helix-xds reads (and the TLS-only Envoy's model).
	ep, err := pick(2)
	if err != nil {
		return err
	}
	s.fullAddr, s.tlsAddr = addr(ep[0]), addr(ep[1])
	s.cfgPath = filepath.Join(s.dir, "gateway.yaml")
	if err := os.WriteFile(s.cfgPath, []byte(gatewayYAML(s, ep[0], ap[1], rp[1])), 0o600); err != nil {
		return err
	}
	if s.cfg, err = config.Load(s.cfgPath); err != nil {
		return fmt.Errorf("the bench's gateway config: %w", err)
	}
	xcert, xkey := s.certs(pki.XDSServer)
	// --startup-grace=0s: publish at once; the bench waits for its worker
	// itself.
	s.xds, err = s.start(ctx, "helix-xds", false, nil, s.bin("helix-xds"),
		"--config="+s.cfgPath, "--xds-listen="+s.xdsAddr, "--status-listen="+addr(xp[1]),
		"--tls-cert-file="+xcert, "--tls-key-file="+xkey, "--client-ca-file="+s.caFile(), "--startup-grace=0s")
	if err != nil {
		return err
	}
	rcert, rkey := s.certs(pki.RateLimitServer)
	rxcert, rxkey := s.certs(pki.RateLimitXDSClient)
	s.rlDebugURL = "http://" + addr(rp[3]) + "/rlconfig"
	s.ratelimit, err = s.start(ctx, "helix-ratelimit", false, nil, s.bin("helix-ratelimit"),
		"--grpc-listen="+addr(rp[1]), "--http-listen="+addr(rp[2]), "--debug-listen="+addr(rp[3]),
		"--metrics-listen="+addr(rp[4]), "--redis-address="+addr(rp[0]),
		"--tls-cert-file="+rcert, "--tls-key-file="+rkey, "--client-ca-file="+s.caFile(),
		"--xds-address="+s.xdsAddr, "--xds-server-name=helix-xds", "--xds-ca-file="+s.caFile(),
		"--xds-cert-file="+rxcert, "--xds-key-file="+rxkey, "--log-level=warn")
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "helix-xds status", 30*time.Second, s.xds, func(ctx context.Context) error {
		_, err := httpGet(ctx, http.DefaultClient, xdsStatus+"/healthz")
		return err
	}); err != nil {
		return err
	}

	// The full chain's Envoy, bootstrapped as `helix-xds bootstrap` does.
	logf("starting the full chain's Envoy")
	if s.fullEnvoy, err = s.startEnvoy(ctx, "envoy-full", "bench-envoy-full", "helix", s.xdsAddr); err != nil {
		return err
	}

	// The TLS-only Envoy: the translator's resources for the same config
	// and worker, minus ext_authz and the rate-limit filter, from an ADS
	// server in this process.
	if err := waitFor(ctx, "helix-worker ready", 120*time.Second, s.worker, func(ctx context.Context) error {
		_, err := httpGet(ctx, http.DefaultClient, fmt.Sprintf("http://%s/v2/health/ready", addr(s.workerHTTP)))
		return err
	}); err != nil {
		return err
	}
	adsPorts, err := pick(1)
	if err != nil {
		return err
	}
	logf("starting the TLS-only Envoy and its ADS server")
	if s.ads, err = startTLSOnlyADS(ctx, s, adsPorts[0], ep[1]); err != nil {
		return err
	}
	if s.tlsEnvoy, err = s.startEnvoy(ctx, "envoy-tls", "bench-envoy-tls", tlsOnlyNodeCluster, s.ads.addr); err != nil {
		return err
	}

	// The client perf_analyzer is: every model, plan bench.
	if err := waitFor(ctx, "helix-authz JWKS", 60*time.Second, s.authz, func(ctx context.Context) error {
		_, err := httpGet(ctx, s.tokenHTTP, s.issuer+"/.well-known/jwks.json")
		return err
	}); err != nil {
		return err
	}
	name, plan := "bench-gateway", benchPlan
	scopes, models := []string{"models:infer", "models:read"}, []string{"*"}
	c, err := s.admin.CreateClient(ctx, admin.ClientRequest{Name: &name, Scopes: &scopes, Models: &models, Plan: &plan})
	if err != nil {
		return fmt.Errorf("helix-authz: create client: %w", err)
	}
	s.clientID, s.clientSecret = c.ClientID, c.ClientSecret

	// Ready: helix-ratelimit holds the bench plan, both Envoys are live,
	// and every path answers a ModelInfer.
	if err := waitFor(ctx, "helix-ratelimit holds the bench plan", 60*time.Second, s.ratelimit, func(ctx context.Context) error {
		b, err := httpGet(ctx, http.DefaultClient, s.rlDebugURL)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), fmt.Sprint(benchPlanRPS)) {
			return fmt.Errorf("rlconfig has no %d limit yet", benchPlanRPS)
		}
		return nil
	}); err != nil {
		return err
	}
	return s.connect(ctx)
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
			_, err := cl.ModelInfer(ctx, simpleRequest())
			return err
		}); err != nil {
			return err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = inference.NewGRPCInferenceServiceClient(s.fullConn).ModelInfer(cctx, simpleRequest())
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
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.issuer+"/oauth2/token", strings.NewReader(form))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(s.clientID), url.QueryEscape(s.clientSecret))
	resp, err := s.tokenHTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("token: HTTP %d: %.300s", resp.StatusCode, body)
	}
	if time.Duration(tr.ExpiresIn)*time.Second < 10*time.Minute {
		return "", fmt.Errorf("token lives %d s; the bench wants at least 10 minutes (helix-authz --token-lifetime)", tr.ExpiresIn)
	}
	return tr.AccessToken, nil
}

// envoy is a running Envoy and its admin interface.
type envoy struct {
	*proc
	adminURL string
}

// startEnvoy writes a bootstrap (envoy/bootstrap, what `helix-xds
// bootstrap` writes) for the ADS server at xdsAddr and starts Envoy on it.
// Access logs go to standard output, which is discarded: the line is
// formatted and written, but no disk is in the measurement.
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
	p, err := s.start(ctx, name, true, nil, s.envoyBin, "-c", bpath, "--admin-address-path", adminPath,
		"--disable-hot-restart", "--concurrency", fmt.Sprint(s.envoyConcurrency))
	if err != nil {
		return nil, err
	}
	e := &envoy{proc: p}
	if err := waitFor(ctx, name+" admin address", 30*time.Second, p, func(context.Context) error {
		b, err := os.ReadFile(adminPath)
		if err != nil || strings.TrimSpace(string(b)) == "" {
			return errors.New("not written yet")
		}
		e.adminURL = "http://" + strings.TrimSpace(string(b))
		return nil
	}); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, name+" LIVE", 60*time.Second, p, func(ctx context.Context) error {
		b, err := httpGet(ctx, http.DefaultClient, e.adminURL+"/ready")
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) != "LIVE" {
			return fmt.Errorf("state %q", strings.TrimSpace(string(b)))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return e, nil
}

// gatewayYAML is the bench's gateway config: deploy/local/gateway.yaml's
// settings with this run's ports and PKI, and the bench plan.
func gatewayYAML(s *stack, listenPort, authzPort, ratelimitPort int) string {
	lc, lk := s.certs(pki.EnvoyServer)
	ac, ak := s.certs(pki.EnvoyAuthzClient)
	rc, rk := s.certs(pki.EnvoyRateLimitClient)
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
  address: 127.0.0.1:%d
  timeout: 100ms
  failure_mode: open
  default_plan: free
  tls:
    ca_file: %s
    cert_file: %s
    key_file: %s
    server_name: helix-ratelimit
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
`, listenPort, lc, lk, authzPort, s.caFile(), ac, ak, ratelimitPort, s.caFile(), rc, rk, benchPlan, benchPlanRPS)
}

// simpleRequest is a ModelInfer on simple, as perf_analyzer sends it
// (two INT32 [1,16] inputs, raw contents).
func simpleRequest() *inference.ModelInferRequest {
	in := make([]byte, 64)
	return &inference.ModelInferRequest{
		ModelName: "simple",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, 16}},
			{Name: "INPUT1", Datatype: "INT32", Shape: []int64{1, 16}},
		},
		RawInputContents: [][]byte{in, in},
	}
}

// mlpRequest is a ModelInfer on mlp (one FP32 [1,256] input, zeros).
func mlpRequest() *inference.ModelInferRequest {
	return &inference.ModelInferRequest{
		ModelName:        "mlp",
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 256}}},
		RawInputContents: [][]byte{make([]byte, 4*256)},
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}
