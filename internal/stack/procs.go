package stack

// The processes of the stack, one method each: the files it needs, its
// command line, how to tell it is ready. description (stack.go) orders
// them.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/helixflow/helixflow/envoy/bootstrap"
	"github.com/helixflow/helixflow/internal/atomicfile"
	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/mailpitbin"
	"github.com/helixflow/helixflow/internal/pgbin"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/stack/envoybin"
	"github.com/helixflow/helixflow/internal/supervise"
	"github.com/helixflow/helixflow/internal/wire"
)

// prepare makes what several processes share: the development PKI (kept
// while valid, as `helixctl pki init` does), with a client certificate of
// its own for each worker (its identity, to which helix-xds binds the
// worker ids it registers); and the gateway config, which helix-authz
// (its plans) reads before helix-xds starts.
func (s *Stack) prepare(ctx context.Context) error {
	if err := s.issue(ctx, pki.LocalSpecs(), s.opts.Workers...); err != nil {
		return err
	}
	return s.WriteGatewayConfig()
}

// issue makes (or keeps) specs and the client certificates of workers.
func (s *Stack) issue(ctx context.Context, specs []pki.Spec, workers ...Worker) error {
	for _, w := range workers {
		spec, err := pki.WorkerClient(w.Name)
		if err != nil {
			return fmt.Errorf("stack: worker %q: %w", w.Name, err)
		}
		specs = append(specs, spec)
	}
	opts := pki.Options{Dir: s.PKIDir()}
	if l := s.opts.CertLifetime; l > 0 {
		opts.Lifetime, opts.RenewBefore = l, l/2
	}
	if _, err := pki.Init(ctx, opts, specs); err != nil {
		return fmt.Errorf("stack: pki: %w", err)
	}
	return nil
}

// postgres is the machine's PostgreSQL (internal/pgbin) on Dir/pg
// (created once, user helix with the password in Dir/pg-password,
// scram-sha-256 on 127.0.0.1 only: any local user can reach the port), as
// the "postgres" user when we are root.
func (s *Stack) postgres() ([]supervise.Spec, error) {
	bins, err := pgbin.Find()
	if err != nil {
		return nil, fmt.Errorf("stack: %w (run make deps)", err)
	}
	cred, err := pgbin.User()
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	data := filepath.Join(s.opts.Dir, "pg")
	if cred != nil {
		if err := pgbin.Reachable(data, cred); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	pwFile, password, err := s.secretFile("pg-password")
	if err != nil {
		return nil, err
	}
	s.DatabaseURL = fmt.Sprintf("postgres://helix:%s@%s/postgres?sslmode=disable", password, Addr(s.Ports.Postgres))
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		if err := os.MkdirAll(data, 0o700); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
		if cred != nil {
			// initdb runs as postgres and reads the password file.
			for _, p := range []string{data, pwFile} {
				if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
					return nil, fmt.Errorf("stack: %w", err)
				}
			}
		}
		cmd := exec.Command(bins.Initdb, "-D", data, "-U", "helix", "--pwfile="+pwFile, "-A", "scram-sha-256", "-E", "UTF8")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("stack: initdb %s: %w\n%s", data, err, out)
		}
	} else if err := passwordAuth(data); err != nil {
		return nil, err
	}
	return []supervise.Spec{{
		Name: Postgres, Path: bins.Postgres, Credential: cred,
		Args: []string{"-D", data, "-c", "listen_addresses=127.0.0.1", "-c", "port=" + strconv.Itoa(s.Ports.Postgres),
			"-c", "unix_socket_directories="},
		Ready:      pgReady(s.DatabaseURL),
		StopSignal: syscall.SIGINT, // fast shutdown: SIGTERM would wait for every client
	}}, nil
}

// secretFile returns the contents of a file in Dir holding 32 random
// bytes in hex, made on first use and kept. The file is 0600 whatever the
// umask (atomicfile), and one kept from before is made 0600 again.
func (s *Stack) secretFile(name string) (path, value string, err error) {
	path = filepath.Join(s.opts.Dir, name)
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", "", fmt.Errorf("stack: %w", err)
		}
		return path, strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails on Linux
	value = hex.EncodeToString(b)
	if err := atomicfile.Write(path, []byte(value+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("stack: %w", err)
	}
	return path, value, nil
}

// passwordAuth refuses a data folder made before the stack used
// passwords, whose pg_hba.conf still trusts every local connection.
func passwordAuth(data string) error {
	b, err := os.ReadFile(filepath.Join(data, "pg_hba.conf"))
	if err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") && f[len(f)-1] == "trust" {
			return fmt.Errorf("stack: %s trusts local connections (made before the stack used a password): remove %s to make it again, with its clients and keys", filepath.Join(data, "pg_hba.conf"), data)
		}
	}
	return nil
}

// mailpit takes helix-authz's mails over plain SMTP on loopback (which
// helix-authz allows to a loopback server only) and keeps them in
// Dir/mailpit, readable in its UI and API.
func (s *Stack) mailpit() ([]supervise.Spec, error) {
	bin := s.opts.MailpitBin
	if bin == "" {
		var err error
		if bin, err = mailpitbin.Find(s.opts.Root); err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
	}
	dir := filepath.Join(s.opts.Dir, "mailpit")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	return []supervise.Spec{{
		Name: Mailpit, Path: bin,
		Args:  mailpitbin.Args(Addr(s.Ports.MailpitSMTP), Addr(s.Ports.MailpitUI), filepath.Join(dir, "mailpit.db")),
		Ready: httpOK(plainClient, s.MailpitURL+"/readyz"),
	}}, nil
}

// MailFrom is the sender of the local stack's mails.
const MailFrom = "helixflow@localhost"

// EnvoyProxies is what helix-authz's --trusted-proxies names in the stack:
// Envoy, on loopback.
const EnvoyProxies = "127.0.0.1/32"

// authz is helix-authz: TLS on every listener, mTLS (Envoy's client
// certificate) on ext_authz; its rate-limit counters in the stack's Redis;
// its mails to the stack's mailpit, with links to the gateway, which
// serves its public port (deploy/local/gateway.yaml, authz.public).
func (s *Stack) authz() ([]supervise.Spec, error) {
	kek, _, err := s.secretFile("kek")
	if err != nil {
		return nil, err
	}
	tokenFile, token, err := s.secretFile("admin-token")
	if err != nil {
		return nil, err
	}
	s.AdminToken = token
	client, err := s.TLSClient("")
	if err != nil {
		return nil, err
	}
	cert, key := s.Cert(pki.AuthzServer)
	xdsCert, xdsKey := s.Cert(pki.AuthzXDSClient)
	// Replicas share the first's issuer (the tokens' iss), Postgres and
	// secrets; each listens on ports of its own.
	instances := append([]AuthzPorts{{s.Ports.Authz, s.Ports.Admin, s.Ports.ExtAuthz, s.Ports.AuthzMetrics}}, s.Ports.AuthzReplicas...)
	specs := make([]supervise.Spec, len(instances))
	for i, p := range instances {
		name := Authz
		if i > 0 {
			name = fmt.Sprintf("%s-%d", Authz, i+1)
		}
		specs[i] = supervise.Spec{
			Name: name, Path: s.bin("helix-authz"),
			// The URL holds Postgres's password: the environment, not the
			// command line, which every local user can read.
			Env: []string{"HELIX_DATABASE_URL=" + s.DatabaseURL},
			Args: append([]string{"--kek-file=" + kek, "--admin-token-file=" + tokenFile,
				"--gateway-config=" + s.ConfigPath(), "--redis-address=" + Addr(s.Ports.Redis), "--issuer=" + s.Issuer, "--http-listen=" + Addr(p.Authz), "--admin-listen=" + Addr(p.Admin),
				"--grpc-listen=" + Addr(p.ExtAuthz), "--metrics-listen=" + Addr(p.Metrics),
				"--tls-cert-file=" + cert, "--tls-key-file=" + key, "--client-ca-file=" + s.CAFile(),
				"--smtp-address=" + Addr(s.Ports.MailpitSMTP), "--smtp-tls=none", "--mail-from=" + MailFrom,
				// People reach the public surface through Envoy (the
				// gateway config's authz.public): links, the CSRF origin
				// and the session cookie are the gateway's; Envoy's
				// X-Forwarded-For names the client for the throttles.
				"--public-url=" + s.GatewayURL(), "--trusted-proxies=" + EnvoyProxies,
				// The model catalogue (GET /api/v1/models), from helix-xds
				// with helix-authz's own client certificate.
				"--xds-address=" + Addr(s.Ports.XDS), "--xds-ca-file=" + s.CAFile(),
				"--xds-cert-file=" + xdsCert, "--xds-key-file=" + xdsKey}, s.otlpArgs()...),
			// The JWKS answers once the first signing key exists: tokens
			// can be issued.
			Ready: httpOK(client, "https://"+Addr(p.Authz)+"/.well-known/jwks.json"),
		}
	}
	return specs, nil
}

// xds is helix-xds on Dir/gateway.yaml, mTLS from Envoy and the workers;
// its rollout controller reads helix-authz's rollouts table and, with
// Monitoring, evaluates the SLOs against the stack's Prometheus (which
// starts later: until it answers, a due step holds).
func (s *Stack) xds() ([]supervise.Spec, error) {
	cert, key := s.Cert(pki.XDSServer)
	args := []string{"--config=" + s.ConfigPath(), "--xds-listen=" + Addr(s.Ports.XDS),
		"--status-listen=" + Addr(s.Ports.XDSStatus),
		"--tls-cert-file=" + cert, "--tls-key-file=" + key, "--client-ca-file=" + s.CAFile()}
	if s.opts.Monitoring {
		args = append(args, "--prometheus-url="+s.PrometheusURL())
	}
	return []supervise.Spec{{
		Name: XDS, Path: s.bin("helix-xds"),
		// The URL holds Postgres's password: the environment, as for
		// helix-authz.
		Env:   []string{"HELIX_DATABASE_URL=" + s.DatabaseURL},
		Args:  append(args, s.otlpArgs()...),
		Ready: httpOK(plainClient, s.XDSStatusURL()+"/healthz"),
	}}, nil
}

// PrometheusURL is the stack's Prometheus (with Monitoring).
func (s *Stack) PrometheusURL() string { return "http://" + Addr(s.Ports.Prometheus) }

// XDSStatusURL is helix-xds's status server (/status, /healthz, /metrics).
func (s *Stack) XDSStatusURL() string { return "http://" + Addr(s.Ports.XDSStatus) }

// WriteGatewayConfig writes helix-xds's config (Options.GatewayConfig, or
// deploy/local/gateway.yaml with this stack's ports) to ConfigPath.
func (s *Stack) WriteGatewayConfig() error {
	var b []byte
	var err error
	if s.opts.GatewayConfig != nil {
		b, err = s.opts.GatewayConfig(s)
	} else {
		b, err = s.localGatewayConfig()
	}
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.ConfigPath(), b, 0o600); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	return nil
}

func (s *Stack) localGatewayConfig() ([]byte, error) {
	const tmpl = "deploy/local/gateway.yaml"
	b, err := os.ReadFile(filepath.Join(s.opts.Root, tmpl))
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	var replicas, public []string
	for _, p := range s.Ports.AuthzReplicas {
		replicas = append(replicas, Addr(p.ExtAuthz))
		public = append(public, Addr(p.Authz))
	}
	return fillPlaceholders(tmpl, b, map[string]string{
		"HELIX_GATEWAY_PORT":          strconv.Itoa(s.Ports.Gateway),
		"HELIX_EXTAUTHZ_PORT":         strconv.Itoa(s.Ports.ExtAuthz),
		"HELIX_EXTAUTHZ_REPLICAS":     strings.Join(replicas, ", "),
		"HELIX_AUTHZ_PORT":            strconv.Itoa(s.Ports.Authz),
		"HELIX_AUTHZ_PUBLIC_REPLICAS": strings.Join(public, ", "),
		"HELIX_TRACING":               s.tracingSection(),
	})
}

// redis holds helix-authz's rate-limit counters only (windows of a second
// and a minute): nothing saved.
func (s *Stack) redis() ([]supervise.Spec, error) {
	spec, err := RedisSpec(filepath.Join(s.opts.Dir, "redis"), s.Ports.Redis)
	if err != nil {
		return nil, err
	}
	return []supervise.Spec{spec}, nil
}

// RedisSpec is the machine's redis-server on 127.0.0.1:port, saving
// nothing (dir is its working folder), ready once it answers PING: the
// stack's, and bench-authz's for helix-authz's counters.
func RedisSpec(dir string, port int) (supervise.Spec, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return supervise.Spec{}, fmt.Errorf("stack: %w", err)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return supervise.Spec{}, fmt.Errorf("stack: no redis-server (run make deps): %w", err)
	}
	return supervise.Spec{
		Name: Redis, Path: bin,
		Args:  []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", dir},
		Ready: redisPing(Addr(port)),
	}, nil
}

// UsageFlushInterval is how often the stack's workers report usage.
const UsageFlushInterval = 2 * time.Second

// workers are the helix-workers, registering with helix-xds over mTLS
// unless told not to.
func (s *Stack) workers() ([]supervise.Spec, error) {
	var specs []supervise.Spec
	for i := range s.opts.Workers {
		spec, err := s.worker(i)
		if err != nil {
			return nil, err
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// worker is the i-th helix-worker.
func (s *Stack) worker(i int) (supervise.Spec, error) {
	w, p := s.opts.Workers[i], s.Ports.Workers[i]
	repo := w.Repository
	if repo == "" {
		repo = s.modelsDir()
	}
	models := w.Models
	if len(models) == 0 {
		models = []string{"*"}
	}
	args := []string{"--id=" + w.Name, "--model-repository=" + repo, "--model-control-mode=explicit"}
	if w.Pool != "" {
		args = append(args, "--pool="+w.Pool)
	}
	for _, m := range models {
		args = append(args, "--load-model="+m)
	}
	args = append(args, "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
		fmt.Sprintf("--http-port=%d", p.HTTP), fmt.Sprintf("--grpc-port=%d", p.GRPC),
		fmt.Sprintf("--metrics-port=%d", p.Metrics), "--exit-timeout-secs=10")
	args = append(args, s.otlpArgs()...)
	health := httpOK(plainClient, s.WorkerURL(i)+wire.RESTServerReady)
	if !w.Plaintext {
		cert, key := s.Cert(pki.WorkerServer)
		args = append(args, "--tls-cert-file="+cert, "--tls-key-file="+key, "--client-ca-file="+s.CAFile())
		mtls, err := s.TLSClient(pki.EnvoyWorkerClient)
		if err != nil {
			return supervise.Spec{}, err
		}
		health = httpOK(mtls, s.WorkerURL(i)+wire.RESTServerReady)
	}
	if !w.NoRegister {
		cert, key := s.WorkerCert(i)
		args = append(args, "--xds-address="+Addr(s.Ports.XDS), "--xds-ca-file="+s.CAFile(),
			"--xds-cert-file="+cert, "--xds-key-file="+key, "--advertise-address=127.0.0.1")
		// Usage to helix-authz's ledger on its gRPC listener, with the
		// same worker certificate (the --usage-* files default to the
		// --xds-* ones); flushed every 2s so the portal shows it soon.
		args = append(args, "--usage-address="+Addr(s.Ports.ExtAuthz), "--usage-flush-interval="+UsageFlushInterval.String())
		// Stream messages (ModelStreamInfer, WebSocket) count against the
		// client's plan on helix-authz's counters, on the same listener.
		args = append(args, "--limits-address="+Addr(s.Ports.ExtAuthz))
	}
	return supervise.Spec{
		Name: w.Name, Path: s.bin("helix-worker"), Args: append(args, w.Args...),
		Ready: health, ReadyTimeout: 2 * time.Minute, // loading every model takes a while
	}, nil
}

// AddWorker starts one more helix-worker on free ports in the running
// stack and waits until it is ready; it returns its index in Workers and
// Ports.Workers.
func (s *Stack) AddWorker(ctx context.Context, w Worker) (int, error) {
	used := map[int]bool{}
	for _, e := range s.Ports.table() {
		used[*e.p] = true
	}
	var ports [3]int
	for i := range ports {
		for {
			n, err := freeport.Pick()
			if err != nil {
				return 0, fmt.Errorf("stack: %w", err)
			}
			if !used[n] {
				ports[i], used[n] = n, true
				break
			}
		}
	}
	if err := s.issue(ctx, nil, w); err != nil {
		return 0, err
	}
	s.opts.Workers = append(s.opts.Workers, w)
	s.Ports.Workers = append(s.Ports.Workers, WorkerPorts{HTTP: ports[0], GRPC: ports[1], Metrics: ports[2]})
	i := len(s.opts.Workers) - 1
	spec, err := s.worker(i)
	if err != nil {
		return 0, err
	}
	if s.opts.Monitoring {
		// Prometheus scrapes it too (a rollout's pool, say).
		if err := writeTargets(filepath.Join(s.opts.Dir, "prometheus"), "helix-worker", s.workerMetricsPorts()); err != nil {
			return 0, fmt.Errorf("stack: prometheus targets: %w", err)
		}
	}
	return i, s.Run(ctx, spec)
}

// WorkerCert is the i-th worker's client certificate: its own identity
// (pki.WorkerClient), presented to helix-xds's registry.
func (s *Stack) WorkerCert(i int) (certFile, keyFile string) {
	return s.Cert(pki.WorkerClientName(s.opts.Workers[i].Name))
}

// WorkerURL is the named worker's HTTP base URL (https unless Plaintext).
func (s *Stack) WorkerURL(i int) string {
	if s.opts.Workers[i].Plaintext {
		return "http://" + Addr(s.Ports.Workers[i].HTTP)
	}
	return "https://" + Addr(s.Ports.Workers[i].HTTP)
}

// envoy is Envoy, bootstrapped with helix-xds only (the rest comes over
// ADS), as `helix-xds bootstrap` writes it.
func (s *Stack) envoy() ([]supervise.Spec, error) {
	bin := s.opts.EnvoyBin
	if bin == "" {
		var err error
		if bin, err = envoybin.Find(s.opts.Root); err != nil {
			return nil, err
		}
	}
	cert, key := s.Cert(pki.EnvoyXDSClient)
	b, err := bootstrap.Render(bootstrap.Config{
		NodeID: s.opts.NodeID, NodeCluster: "helix", XDSAddress: Addr(s.Ports.XDS),
		XDSTLS:       &bootstrap.TLS{CAFile: s.CAFile(), CertFile: cert, KeyFile: key, ServerName: "helix-xds"},
		AdminAddress: Addr(s.Ports.EnvoyAdmin),
	})
	if err != nil {
		return nil, fmt.Errorf("stack: envoy bootstrap: %w", err)
	}
	path := filepath.Join(s.opts.Dir, "envoy.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	args := []string{"-c", path, "--disable-hot-restart"}
	if s.opts.EnvoyHotRestart {
		args = append([]string{"-c", path}, s.envoyEpochArgs(0)...)
	}
	if s.opts.EnvoyConcurrency > 0 {
		args = append(args, "--concurrency", strconv.Itoa(s.opts.EnvoyConcurrency))
	}
	return []supervise.Spec{{
		Name: Envoy, Path: bin, Args: args, DiscardStdout: s.opts.EnvoyDiscardStdout,
		// LIVE: its first listeners and clusters arrived and warmed.
		Ready: func(ctx context.Context) error {
			body, err := s.EnvoyAdmin(ctx, "/ready")
			if err == nil && strings.TrimSpace(body) != "LIVE" {
				err = fmt.Errorf("envoy is %s", strings.TrimSpace(body))
			}
			return err
		},
	}}, nil
}

// alertmanager uses alerts/alertmanager.local.yml: alerts are shown,
// sent nowhere.
func (s *Stack) alertmanager() ([]supervise.Spec, error) {
	if !s.opts.Monitoring {
		return nil, nil
	}
	bin, err := lookPath("prometheus-alertmanager", "alertmanager")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.opts.Dir, "alertmanager")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	return []supervise.Spec{{
		Name: Alertmanager, Path: bin,
		Args: []string{"--config.file=" + filepath.Join(s.opts.Root, "alerts", "alertmanager.local.yml"),
			"--storage.path=" + dir, "--web.listen-address=" + Addr(s.Ports.Alertmanager), "--cluster.listen-address="},
		Ready: httpOK(plainClient, "http://"+Addr(s.Ports.Alertmanager)+"/-/ready"),
	}}, nil
}

// prometheus: alerts/prometheus.yml and alerts/rules/ are copied to
// Dir/prometheus/ (refreshed on each start; the time series in data/ are
// kept 7 days), with targets/<job>.json naming this stack's ports.
func (s *Stack) prometheus() ([]supervise.Spec, error) {
	if !s.opts.Monitoring {
		return nil, nil
	}
	bin, err := lookPath("prometheus")
	if err != nil {
		return nil, err
	}
	mon := filepath.Join(s.opts.Dir, "prometheus")
	if err := s.writePrometheusConfig(mon); err != nil {
		return nil, fmt.Errorf("stack: prometheus: %w", err)
	}
	return []supervise.Spec{{
		Name: Prometheus, Path: bin,
		Args: []string{"--config.file=" + filepath.Join(mon, "prometheus.yml"), "--storage.tsdb.path=" + filepath.Join(mon, "data"),
			"--storage.tsdb.retention.time=7d", "--web.listen-address=" + Addr(s.Ports.Prometheus),
			// Exemplars (trace ids on the latency histograms, scraped as
			// OpenMetrics, which Prometheus asks for first) are kept, so
			// Grafana's latency panels link to Jaeger.
			"--enable-feature=exemplar-storage"},
		Ready: httpOK(plainClient, "http://"+Addr(s.Ports.Prometheus)+"/-/ready"),
	}}, nil
}

func (s *Stack) writePrometheusConfig(mon string) error {
	for _, d := range []string{"rules", "targets"} {
		if err := os.RemoveAll(filepath.Join(mon, d)); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(mon, d), 0o755); err != nil {
			return err
		}
	}
	alerts := filepath.Join(s.opts.Root, "alerts")
	cfg, err := os.ReadFile(filepath.Join(alerts, "prometheus.yml"))
	if err != nil {
		return err
	}
	if s.opts.ScrapeInterval > 0 {
		if cfg, err = setScrapeInterval(cfg, s.opts.ScrapeInterval); err != nil {
			return fmt.Errorf("alerts/prometheus.yml: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(mon, "prometheus.yml"), cfg, 0o644); err != nil {
		return err
	}
	rules, err := filepath.Glob(filepath.Join(alerts, "rules", "*.yml"))
	if err != nil {
		return err
	}
	for _, r := range rules {
		if err := copyFile(r, filepath.Join(mon, "rules", filepath.Base(r))); err != nil {
			return err
		}
	}
	for job, ports := range map[string][]int{
		"helix-worker": s.workerMetricsPorts(), "helix-authz": {s.Ports.AuthzMetrics}, "helix-xds": {s.Ports.XDSStatus},
		"envoy": {s.Ports.EnvoyAdmin}, "alertmanager": {s.Ports.Alertmanager}, "prometheus": {s.Ports.Prometheus},
	} {
		if err := writeTargets(mon, job, ports); err != nil {
			return err
		}
	}
	return nil
}

func (s *Stack) workerMetricsPorts() []int {
	var ports []int
	for _, w := range s.Ports.Workers {
		ports = append(ports, w.Metrics)
	}
	return ports
}

// writeTargets writes targets/<job>.json, which Prometheus re-reads when
// it changes (file_sd).
func writeTargets(mon, job string, ports []int) error {
	targets := []string{}
	for _, p := range ports {
		targets = append(targets, strconv.Quote(Addr(p)))
	}
	body := fmt.Sprintf("[{\"targets\": [%s]}]\n", strings.Join(targets, ","))
	return atomicfile.Write(filepath.Join(mon, "targets", job+".json"), []byte(body), 0o644)
}

// setScrapeInterval sets prometheus.yml's global scrape_interval,
// evaluation_interval and scrape_timeout (which may not exceed the
// interval) to d, keeping the rest of the file as it is.
func setScrapeInterval(cfg []byte, d time.Duration) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(cfg, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a mapping")
	}
	var global *yaml.Node
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "global" && root.Content[i+1].Kind == yaml.MappingNode {
			global = root.Content[i+1]
		}
	}
	if global == nil {
		return nil, errors.New("no global section")
	}
	want := map[string]bool{"scrape_interval": true, "evaluation_interval": true, "scrape_timeout": true}
	for i := 0; i+1 < len(global.Content); i += 2 {
		if k := global.Content[i].Value; want[k] {
			global.Content[i+1].Value = model.Duration(d).String()
			delete(want, k)
		}
	}
	for _, k := range []string{"scrape_interval", "evaluation_interval", "scrape_timeout"} {
		if want[k] {
			global.Content = append(global.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k},
				&yaml.Node{Kind: yaml.ScalarNode, Value: model.Duration(d).String()})
		}
	}
	return yaml.Marshal(&doc)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// lookPath finds the first of names on PATH.
func lookPath(names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", errors.New("stack: " + names[0] + " is missing (run make deps)")
}
