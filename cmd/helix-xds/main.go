// Command helix-xds is HelixFlow's control plane: it serves Envoy its
// listeners, routes, clusters, endpoints and secrets over ADS, built from
// the gateway config file and the workers that registered with it, and
// writes Envoy's bootstrap (helix-xds bootstrap).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/helixflow/helixflow/internal/daemon"
	"github.com/helixflow/helixflow/internal/httpserver"
	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/netaddr"
	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/internal/tlsfiles"
	"github.com/helixflow/helixflow/internal/version"
	catalogv1 "github.com/helixflow/helixflow/proto/catalog/v1"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/xds/builder"
	"github.com/helixflow/helixflow/xds/catalog"
	"github.com/helixflow/helixflow/xds/config"
	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/server"
)

type options struct {
	configPath                string
	xdsListen, statusListen   string
	tlsCert, tlsKey, clientCA string
	plaintextLoopback         bool
	nodeCluster               string
	leaseTTL                  time.Duration
	startupGrace              time.Duration
	warmTimeout               time.Duration
	log                       telemetry.LogConfig
	telemetry                 telemetry.Config
	// The worker source (workers.go).
	workersSource, kubeconfig, kubeNamespace string
	kubeNamespaceFile                        string // not a flag: tests point it elsewhere
	kubeSyncTimeout                          time.Duration
	// The rollout controller (rollouts.go).
	databaseURL, prometheusURL string
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("helix-xds", flag.ContinueOnError)
	fs.StringVar(&o.configPath, "config", "", "gateway config file (YAML); reloaded when it changes, a bad file keeps the last good config (required)")
	fs.StringVar(&o.xdsListen, "xds-listen", "127.0.0.1:18000", "ADS (for Envoy) and worker registry (gRPC) address")
	fs.StringVar(&o.statusListen, "status-listen", "127.0.0.1:18001", "/metrics, /status (JSON) and /healthz; plain HTTP, loopback unless you mean it")
	fs.StringVar(&o.tlsCert, "tls-cert-file", "", "TLS certificate of the gRPC listener (read again when it changes, as are the key and client CA)")
	fs.StringVar(&o.tlsKey, "tls-key-file", "", "TLS private key")
	fs.StringVar(&o.clientCA, "client-ca-file", "", "CA whose client certificates Envoys and workers must present (required with TLS)")
	fs.BoolVar(&o.plaintextLoopback, "plaintext-loopback", false, "allow the gRPC listener on a loopback address without TLS (local development only)")
	fs.StringVar(&o.nodeCluster, "node-cluster", "helix", "serve only Envoys of this node cluster (empty: any)")
	fs.DurationVar(&o.leaseTTL, "lease-ttl", registry.DefaultTTL, "worker lease duration: a worker that does not renew within it is removed")
	fs.DurationVar(&o.startupGrace, "startup-grace", 6*time.Second, "after a start, wait this long for workers to register before serving Envoy any config (Envoy keeps its last config meanwhile); longer than the workers' 5 s retry backoff. 0: publish at once")
	fs.DurationVar(&o.warmTimeout, "warm-timeout", server.DefaultWarmTimeout, "when models (clusters) come or go, how long each make-before-break step waits for every Envoy to warm the new clusters or drop routes to the old, before going on without a silent one")
	o.log.RegisterFlags(fs)
	o.telemetry.RegisterFlags(fs)
	workerFlags(fs, o)
	rolloutFlags(fs, o)
	showVersion := version.AddFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: helix-xds --config FILE [flags]\n       helix-xds bootstrap [flags]   (write Envoy's bootstrap; -h for its flags)\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *showVersion {
		return nil, version.ErrRequested
	}
	if err := checkWorkerFlags(fs, o); err != nil {
		return nil, err
	}
	if err := checkRolloutFlags(o); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v (subcommand: bootstrap)", fs.Args())
	}
	if o.configPath == "" {
		return nil, errors.New("--config is required")
	}
	if err := o.log.Validate(); err != nil {
		return nil, err
	}
	if err := o.telemetry.Validate(); err != nil {
		return nil, err
	}
	if o.warmTimeout <= 0 {
		return nil, fmt.Errorf("--warm-timeout %v: must be positive", o.warmTimeout)
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	// Secure by default: whoever reaches this port gets the gateway's
	// config and can register workers, so TLS means mTLS, and plaintext
	// is for loopback development only.
	if o.tlsCert != "" && o.clientCA == "" {
		return nil, errors.New("--client-ca-file is required with TLS: Envoys and workers must present client certificates")
	}
	if o.tlsCert == "" && (!o.plaintextLoopback || !netaddr.Loopback(o.xdsListen)) {
		return nil, fmt.Errorf("--xds-listen %s: TLS is required (--tls-cert-file/--tls-key-file/--client-ca-file); plaintext is allowed only on loopback with --plaintext-loopback", o.xdsListen)
	}
	if o.tlsCert == "" && o.clientCA != "" {
		return nil, errors.New("--client-ca-file needs --tls-cert-file and --tls-key-file")
	}
	return o, nil
}

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "bootstrap" {
		err := runBootstrap(args[1:], os.Stdout)
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "helix-xds bootstrap:", err)
			os.Exit(2)
		}
		return
	}
	o, err := parseFlags(args)
	version.ExitOnFlagError("helix-xds", err)
	log, err := o.log.NewLogger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helix-xds:", err)
		os.Exit(2)
	}
	logClientGo(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdownTracing, err := telemetry.Setup(ctx, "helix-xds", o.telemetry)
	if err != nil {
		log.Error("helix-xds stopped", "error", err)
		os.Exit(1)
	}
	err = serve(ctx, o, log)
	telemetry.Shutdown(shutdownTracing, telemetry.FlushTimeout, log)
	if err != nil {
		log.Error("helix-xds stopped", "error", err)
		os.Exit(1)
	}
}

// Shutdown timeouts: the status page's requests are short; ADS streams
// never end by themselves, so gRPC gives unary registry calls a moment and
// then closes them.
const (
	httpShutdown = 5 * time.Second
	grpcShutdown = 2 * time.Second
)

func serve(ctx context.Context, o *options, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	adsOpts := server.Options{Logger: log.With("component", "ads"), Registerer: reg, NodeCluster: o.nodeCluster, WarmTimeout: o.warmTimeout}
	if o.tlsCert != "" {
		// Envoy reads its config (secrets included); workers, from the
		// same CA, nothing.
		adsOpts.Readers = identity.ADSReaders()
	}
	ads, err := server.New(ctx, adsOpts)
	if err != nil {
		return err
	}
	workers, workerRegistry, err := openWorkers(ctx, o, reg, log)
	if err != nil {
		return err
	}
	grace := o.startupGrace
	if workerRegistry == nil {
		grace = 0 // the Kubernetes source is complete once it started
	}
	var onConfig func(*config.Config)
	if workerRegistry != nil {
		onConfig = func(c *config.Config) { workerRegistry.SetModels(c.WorkerModels()) }
	}
	b, err := builder.New(ctx, builder.Config{
		ConfigPath: o.configPath, Workers: workers, Publisher: ads, StartupGrace: grace, OnConfig: onConfig,
		Registerer: reg, Logger: log.With("component", "builder"),
	})
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	ads.SetTrafficStatus(b.TrafficStatus) // /status: traffic
	rollouts, closeRollouts, err := openRollouts(o, b, reg, log.With("component", "rollout"))
	if err != nil {
		return err
	}
	defer closeRollouts()

	gs, err := grpcServer(o, reg)
	if err != nil {
		return err
	}
	ads.Register(gs)
	if workerRegistry != nil {
		registryv1.RegisterRegistryServer(gs, workerRegistry)
	}
	// The model catalogue, from the same workers Envoy is programmed
	// from, for helix-authz alone (it filters the list per caller).
	catOpts := catalog.Config{Source: workers, Registerer: reg, Logger: log.With("component", "catalog")}
	if o.tlsCert != "" {
		catOpts.Readers = identity.CatalogReaders()
	}
	cat, err := catalog.New(catOpts)
	if err != nil {
		return err
	}
	catalogv1.RegisterCatalogServer(gs, cat)
	lis, err := net.Listen("tcp", o.xdsListen)
	if err != nil {
		return fmt.Errorf("--xds-listen: %w", err)
	}
	log.Info("serving ADS", "address", lis.Addr().String(), "mtls", o.tlsCert != "", "node_cluster", o.nodeCluster, "workers_source", o.workersSource, "worker_registry", workerRegistry != nil)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("/status", ads.StatusHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	slis, err := net.Listen("tcp", o.statusListen)
	if err != nil {
		lis.Close()
		return fmt.Errorf("--status-listen: %w", err)
	}
	log.Info("serving status and metrics", "address", slis.Addr().String())

	var g run.Group
	g.Add(run.ContextHandler(ctx))
	g.Add(func() error { return b.Run(ctx) }, func(error) { cancel() })
	if rollouts != nil {
		g.Add(func() error { return rollouts.Run(ctx) }, func(error) { cancel() })
	}
	g.Add(daemon.GRPC(gs, lis, grpcShutdown, log))
	g.Add(daemon.HTTP(httpserver.New(mux, log), slis, httpShutdown, log))
	err = daemon.Run(&g)
	log.Info("stopped")
	return err
}

func grpcServer(o *options, reg prometheus.Registerer) (*grpc.Server, error) {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(4 << 20),
		// Envoy keeps its ADS stream alive with HTTP/2 pings every 30s.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if o.tlsCert == "" {
		return grpc.NewServer(opts...), nil
	}
	conf, err := tlsfiles.ServerConfig(o.tlsCert, o.tlsKey, o.clientCA)
	if err != nil {
		return nil, err
	}
	if err := reg.Register(tlsfiles.ExpiryMetric(conf, "grpc")); err != nil {
		return nil, err
	}
	return grpc.NewServer(append(opts, grpc.Creds(credentials.NewTLS(conf)))...), nil
}
