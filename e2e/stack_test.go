package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/redistest"
	"github.com/helixflow/helixflow/workers/registration"
)

// stack is the running system, as a client and an operator see it.
type stack struct {
	ca       *envoytest.CA
	caPool   *x509.CertPool
	envoy    *envoytest.Proc
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

	// helix-xds: its process, gRPC address, and arguments (to restart it).
	xds     *proc
	xdsAddr string
	xdsArgs []string
	// workerCert is the client certificate workers present to helix-xds.
	workerCert envoytest.Pair
	// workers started so far; workers[0] is the stack's own, serving simple.
	workers []*worker
	// redis holds helix-ratelimit's counters; stop and start it to test
	// an outage.
	redis     *redistest.Server
	ratelimit *proc
	// gatewayTLS is Envoy's listener certificate; workerServer the
	// workers' (they serve mTLS: Envoy presents envoyClient).
	gatewayTLS   *secretDir
	workerServer envoytest.Pair
}

// stackOptions choose how the stack's worker joins.
type stackOptions struct {
	// selfRegister starts the worker with helix-worker's --xds-address
	// flags, so it registers itself over mTLS; otherwise the test registers
	// on its behalf (s.register), which lets a test end and resume it.
	selfRegister bool
}

type client struct{ id, secret, token string }

const sampleModel = "simple"

func startStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	envoytest.Binary(t) // skip (or fail with CI=true) before starting anything
	if _, err := os.Stat(filepath.Join(repoRoot, "models", sampleModel, "config.pbtxt")); err != nil {
		t.Fatalf("the sample models are missing (%v): run `make models` first", err)
	}
	dir := t.TempDir()
	s := &stack{ca: envoytest.NewCA(t), clients: map[string]client{}}
	pem, err := os.ReadFile(s.ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	s.caPool = x509.NewCertPool()
	s.caPool.AppendCertsFromPEM(pem)
	authzCert := s.ca.Issue(t, "helix-authz", "127.0.0.1", "localhost")
	xdsCert := s.ca.Issue(t, "helix-xds", "helix-xds", "127.0.0.1")
	envoyClient := s.ca.Issue(t, "envoy", "envoy")
	// Envoy's listener certificate, in a folder it watches, rotated by
	// TestResilience.
	s.gatewayTLS = newSecretDir(t, dir, s.ca.Issue(t, "gateway", "127.0.0.1", "localhost"))
	workerClient := s.ca.Issue(t, "worker-xds-client", "helix-worker") // helix-xds admits this name (--worker-client-names)
	s.workerServer = s.ca.Issue(t, "helix-worker", "helix-worker", "127.0.0.1")
	ratelimitCert := s.ca.Issue(t, "helix-ratelimit", "helix-ratelimit", "127.0.0.1")
	ratelimitClient := s.ca.Issue(t, "helix-ratelimit-xds", "helix-ratelimit")

	// Postgres and helix-authz (mTLS required from Envoy on ext_authz).
	dsn := pgtest.Start(t)
	httpPort, grpcPort, adminPort, metricsPort := freePort(t), freePort(t), freePort(t), freePort(t)
	s.issuer = fmt.Sprintf("https://127.0.0.1:%d", httpPort)
	adminToken := randomHex(t, 24)
	kek := filepath.Join(dir, "kek")
	if err := os.WriteFile(kek, []byte(randomHex(t, 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	authz := startProc(t, "helix-authz", []string{"HELIX_ADMIN_TOKEN=" + adminToken}, bin("helix-authz"),
		"--database-url="+dsn, "--kek-file="+kek, "--issuer="+s.issuer,
		"--http-listen="+addr(httpPort), "--grpc-listen="+addr(grpcPort),
		"--admin-listen="+addr(adminPort), "--metrics-listen="+addr(metricsPort),
		"--tls-cert-file="+authzCert.CertFile, "--tls-key-file="+authzCert.KeyFile, "--client-ca-file="+s.ca.CertFile)
	xdsPort, statusPort, listenPort, ratelimitPort := freePort(t), freePort(t), freePort(t), freePort(t)
	s.xdsAddr, s.workerCert = addr(xdsPort), workerClient
	// helix-worker serving the sample model; started early, as its models
	// take the longest to load.
	worker := s.startWorker(t, workerSpec{
		name: "helix-worker", repo: filepath.Join(repoRoot, "models"), models: []string{sampleModel},
		register: opts.selfRegister,
	})

	// helix-xds over mTLS.
	s.gateway = addr(listenPort)
	s.xdsURL = "http://" + addr(statusPort)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	cfg := gatewayConfig{
		listen: listenPort, listenerCert: s.gatewayTLS.pair(), listenerWatchDir: s.gatewayTLS.dir,
		authzPort: grpcPort, ca: s.ca.CertFile, envoyClient: envoyClient, ratelimitPort: ratelimitPort,
		workersTLS: true,
	}
	writeGatewayConfig(t, cfgPath, cfg)
	s.xdsArgs = []string{
		"--config=" + cfgPath, "--xds-listen=" + addr(xdsPort), "--status-listen=" + addr(statusPort),
		"--tls-cert-file=" + xdsCert.CertFile, "--tls-key-file=" + xdsCert.KeyFile, "--client-ca-file=" + s.ca.CertFile,
		"--lease-ttl=5s", "--log-level=debug",
	}
	s.xds = startProc(t, "helix-xds", nil, bin("helix-xds"), s.xdsArgs...)

	// Redis and helix-ratelimit, which takes its limits from helix-xds and
	// requires Envoy's client certificate.
	s.redis = redistest.Start(t)
	s.ratelimit = startProc(t, "helix-ratelimit", nil, bin("helix-ratelimit"),
		"--grpc-listen="+addr(ratelimitPort), "--http-listen="+addr(freePort(t)), "--debug-listen="+addr(freePort(t)),
		"--metrics-listen="+addr(freePort(t)), "--redis-address="+s.redis.Addr,
		"--tls-cert-file="+ratelimitCert.CertFile, "--tls-key-file="+ratelimitCert.KeyFile, "--client-ca-file="+s.ca.CertFile,
		"--xds-address="+addr(xdsPort), "--xds-ca-file="+s.ca.CertFile, "--xds-cert-file="+ratelimitClient.CertFile,
		"--xds-key-file="+ratelimitClient.KeyFile, "--xds-server-name=helix-xds")

	// Envoy, bootstrapped by `helix-xds bootstrap`.
	bootstrap := filepath.Join(dir, "envoy.yaml")
	runCmd(t, nil, bin("helix-xds"), "bootstrap", "--node-id=e2e-envoy", "--node-cluster=helix",
		"--xds-address="+addr(xdsPort), "--xds-ca-file="+s.ca.CertFile, "--xds-cert-file="+envoyClient.CertFile,
		"--xds-key-file="+envoyClient.KeyFile, "--xds-server-name=helix-xds", "--admin-address=127.0.0.1:0",
		"--output="+bootstrap)

	s.waitXDS(t)
	s.envoy = envoytest.Start(t, bootstrap)

	authzTLS := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.caPool}}}
	waitFor(t, "helix-authz JWKS", 60*time.Second, authz, func(ctx context.Context) error {
		_, err := httpGet(ctx, authzTLS, s.issuer+"/.well-known/jwks.json")
		return err
	})
	s.adminEnv = []string{"HELIX_ADMIN_URL=http://" + addr(adminPort), "HELIX_ADMIN_TOKEN=" + adminToken}
	// "infer-only" is what ModelStreamInfer needs (models:infer on every
	// model) and nothing more.
	// "free" is on the free plan (5 requests per second per model).
	for name, scope := range map[string]string{"all": "models:infer,models:read", "mlp-only": "models:mlp:infer", "infer-only": "models:infer", "free": "models:infer,models:read"} {
		plan := "standard"
		if name == "free" {
			plan = "free"
		}
		out := runCmd(t, s.adminEnv, bin("helixctl"), "clients", "create", "--name", "e2e-"+name,
			"--scope", scope, "--model", "*", "--plan", plan, "--output", "json")
		var c struct {
			ID     string `json:"client_id"`
			Secret string `json:"client_secret"`
		}
		if err := json.Unmarshal(out, &c); err != nil || c.ID == "" || c.Secret == "" {
			t.Fatalf("helixctl clients create: %v in %s", err, out)
		}
		s.clients[name] = client{id: c.ID, secret: c.Secret, token: s.token(t, authzTLS, c.ID, c.Secret)}
	}

	worker.waitReady(t)
	if !opts.selfRegister {
		// The test registers the way a worker does, with its client
		// certificate; helix-xds turns it into an endpoint.
		s.register = registration.Config{
			XDSAddress: addr(xdsPort), TLS: s.clientTLS(t, workerClient), WorkerID: "e2e-worker-1", Address: "127.0.0.1",
			GRPCPort: worker.grpcPort, HTTPPort: worker.httpPort,
			Models: func(context.Context) ([]registration.Model, error) {
				return []registration.Model{{Name: sampleModel, Versions: []string{"1"}, Ready: true}}, nil
			},
			Ready: func() bool { return true },
		}
		s.startRegistration(t)
	}
	s.cfgPath, s.cfg = cfgPath, cfg

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.envoy.WaitLive(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func (s *stack) clientTLS(t *testing.T, pair envoytest.Pair) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(pair.CertFile, pair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: s.caPool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// token gets a client-credentials token from helix-authz.
func (s *stack) token(t *testing.T, c *http.Client, id, secret string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.issuer+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token for %s: %s %s", id, resp.Status, body)
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

// restartXDS starts helix-xds again with the arguments of its first start
// (same ports, same config file) and waits until it answers.
func (s *stack) restartXDS(t *testing.T) {
	t.Helper()
	s.xds = startProc(t, "helix-xds", nil, bin("helix-xds"), s.xdsArgs...)
	s.waitXDS(t)
}

func (s *stack) waitXDS(t *testing.T) {
	t.Helper()
	waitFor(t, "helix-xds status", 30*time.Second, s.xds, func(ctx context.Context) error {
		_, err := httpGet(ctx, http.DefaultClient, s.xdsURL+"/healthz")
		return err
	})
}
