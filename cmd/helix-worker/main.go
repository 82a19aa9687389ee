// Command helix-worker serves a Triton model repository over the KServe v2
// gRPC and HTTP protocols, with Triton's flags, metrics and behavior.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/internal/tlsfiles"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/cuda"
	"github.com/helixflow/helixflow/workers/backend/onnxruntime"
	"github.com/helixflow/helixflow/workers/gpu"
	"github.com/helixflow/helixflow/workers/grpcapi"
	"github.com/helixflow/helixflow/workers/httpapi"
	"github.com/helixflow/helixflow/workers/models"
	"github.com/helixflow/helixflow/workers/registration"
	"github.com/helixflow/helixflow/workers/stats"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type options struct {
	repository      string
	controlMode     string
	loadModels      stringList
	pollSecs        int
	strictReadiness bool
	exitTimeoutSecs int
	serverID        string

	httpAddr, grpcAddr, metricsAddr    string
	httpPort, grpcPort, metricsPort    int
	allowHTTP, allowGRPC, allowMetrics bool
	maxRequestBytes                    int64
	tls                                tlsOptions // tls.go

	ortLibrary       string
	nvmlLibrary      string
	allowGPUMetrics  bool
	metricsInterval  int
	intraOpThreads   int
	interOpThreads   int
	logLevel, logFmt string

	xdsAddress, xdsCAFile, xdsCertFile, xdsKeyFile, advertiseAddress string
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("helix-worker", flag.ContinueOnError)
	fs.StringVar(&o.repository, "model-repository", "", "path of the model repository (required)")
	fs.StringVar(&o.controlMode, "model-control-mode", "none", "none, explicit or poll")
	fs.Var(&o.loadModels, "load-model", "model to load at start in explicit mode; repeatable; \"*\" loads all")
	fs.IntVar(&o.pollSecs, "repository-poll-secs", 15, "seconds between repository scans in poll mode")
	fs.BoolVar(&o.strictReadiness, "strict-readiness", true, "ready only while every model that should be loaded is ready")
	fs.IntVar(&o.exitTimeoutSecs, "exit-timeout-secs", 30, "seconds to let in-flight requests finish on shutdown")
	fs.StringVar(&o.serverID, "id", "helix-worker", "server name reported by server metadata")
	fs.StringVar(&o.httpAddr, "http-address", "0.0.0.0", "address the HTTP server binds")
	fs.StringVar(&o.grpcAddr, "grpc-address", "0.0.0.0", "address the gRPC server binds")
	fs.StringVar(&o.metricsAddr, "metrics-address", "0.0.0.0", "address the metrics server binds")
	fs.IntVar(&o.httpPort, "http-port", 8000, "HTTP port")
	fs.IntVar(&o.grpcPort, "grpc-port", 8001, "gRPC port")
	fs.IntVar(&o.metricsPort, "metrics-port", 8002, "Prometheus metrics port")
	fs.BoolVar(&o.allowHTTP, "allow-http", true, "serve HTTP/REST")
	fs.BoolVar(&o.allowGRPC, "allow-grpc", true, "serve gRPC")
	fs.BoolVar(&o.allowMetrics, "allow-metrics", true, "serve Prometheus metrics")
	fs.Int64Var(&o.maxRequestBytes, "max-request-bytes", 64<<20, "largest request body (HTTP) or message (gRPC) accepted")
	fs.StringVar(&o.ortLibrary, "onnxruntime-library", "", "path of libonnxruntime.so (default: found next to the binary, then in .deps/, then the system)")
	fs.IntVar(&o.intraOpThreads, "intra-op-threads", 0, "ONNX Runtime intra-op threads per instance (0: GOMAXPROCS shared among the model's instances, at least 1)")
	fs.IntVar(&o.interOpThreads, "inter-op-threads", 0, "ONNX Runtime inter-op threads per instance (0: ONNX Runtime's default)")
	fs.StringVar(&o.nvmlLibrary, "nvml-library", "", "path of NVML, libnvidia-ml.so.1 (default: the dynamic loader's search); without it the worker has 0 GPUs")
	fs.BoolVar(&o.allowGPUMetrics, "allow-gpu-metrics", true, "export GPU metrics (dcgm-exporter's DCGM_FI_DEV_*, Triton's nv_gpu_*) on /metrics")
	fs.IntVar(&o.metricsInterval, "metrics-interval-ms", 2000, "a scrape re-reads GPU metrics from NVML when its last reading is older than this")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFmt, "log-format", "text", "text or json")
	fs.StringVar(&o.xdsAddress, "xds-address", "", "host:port of helix-xds's worker registry; empty: do not register")
	fs.StringVar(&o.xdsCAFile, "xds-ca-file", "", "CA bundle (PEM) that signs helix-xds's certificate")
	fs.StringVar(&o.xdsCertFile, "xds-cert-file", "", "client certificate (PEM) this worker presents to helix-xds; re-read on each connection")
	fs.StringVar(&o.xdsKeyFile, "xds-key-file", "", "private key (PEM) of --xds-cert-file")
	fs.StringVar(&o.advertiseAddress, "advertise-address", "", "IP or DNS name Envoy reaches this worker at (required with --xds-address)")
	o.tls.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.repository == "" {
		return nil, errors.New("--model-repository is required")
	}
	if _, err := models.ParseControlMode(o.controlMode); err != nil {
		return nil, fmt.Errorf("--model-control-mode: %w", err)
	}
	for name, p := range map[string]int{"--http-port": o.httpPort, "--grpc-port": o.grpcPort, "--metrics-port": o.metricsPort} {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("%s %d is not a port", name, p)
		}
	}
	if o.pollSecs < 1 {
		return nil, fmt.Errorf("--repository-poll-secs %d must be at least 1", o.pollSecs)
	}
	if o.maxRequestBytes < 1<<10 || o.maxRequestBytes > 1<<31-1 {
		return nil, fmt.Errorf("--max-request-bytes %d must be between 1 KiB and 2 GiB", o.maxRequestBytes)
	}
	if o.metricsInterval < 1 {
		return nil, fmt.Errorf("--metrics-interval-ms %d must be at least 1", o.metricsInterval)
	}
	if o.intraOpThreads < 0 || o.interOpThreads < 0 {
		return nil, errors.New("--intra-op-threads and --inter-op-threads must not be negative")
	}
	if o.xdsAddress != "" && (o.xdsCAFile == "" || o.xdsCertFile == "" || o.xdsKeyFile == "" || o.advertiseAddress == "") {
		return nil, errors.New("--xds-address needs --xds-ca-file, --xds-cert-file, --xds-key-file and --advertise-address")
	}
	if o.xdsAddress != "" && !o.allowGRPC {
		return nil, errors.New("--xds-address needs --allow-grpc: Envoy reaches and health-checks workers over gRPC")
	}
	if o.logFmt != "text" && o.logFmt != "json" {
		return nil, fmt.Errorf("--log-format %q: want text or json", o.logFmt)
	}
	if err := o.tls.check(); err != nil {
		return nil, err
	}
	if err := checkPlaintext(o); err != nil {
		return nil, err
	}
	return o, nil
}

func newLogger(o *options) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	if o.logFmt == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, hopts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, hopts)), nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helix-worker:", err)
		os.Exit(2)
	}
	log, err := newLogger(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helix-worker:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("helix-worker stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o *options, log *slog.Logger) error {
	ort, err := onnxruntime.New(onnxruntime.Options{
		LibraryPath:    o.ortLibrary,
		IntraOpThreads: o.intraOpThreads,
		AutoThreads:    o.intraOpThreads == 0,
		InterOpThreads: o.interOpThreads,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	defer ort.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := stats.NewMetrics(reg)
	if err != nil {
		return err
	}
	gpus := openGPUs(o, log)
	defer gpus.Close()
	if o.allowMetrics && o.allowGPUMetrics {
		gc := gpu.NewCollector(gpus, gpu.CollectorOptions{Interval: time.Duration(o.metricsInterval) * time.Millisecond, Logger: log})
		if err := reg.Register(gc); err != nil {
			return fmt.Errorf("register GPU metrics: %w", err)
		}
		gc.Start(ctx)
		defer gc.Close() // before gpus.Close
	}
	mgr, err := models.New(models.Config{
		Repository:      o.repository,
		ControlMode:     models.ControlMode(o.controlMode),
		StartupModels:   o.loadModels,
		PollInterval:    time.Duration(o.pollSecs) * time.Second,
		Backends:        map[string]backend.Backend{ort.Name(): ort, cuda.Name: cuda.New(cuda.Options{Logger: log, Discovery: gpus})},
		Metrics:         metrics,
		StrictReadiness: o.strictReadiness,
		DrainTimeout:    time.Duration(o.exitTimeoutSecs) * time.Second,
		ServerName:      o.serverID,
		ServerVersion:   version,
		Logger:          log,
	})
	if err != nil {
		return err
	}

	grpcTLS, httpTLS, err := listenerTLSConfigs(o, log)
	if err != nil {
		return err
	}
	for listener, conf := range map[string]*tls.Config{"grpc": grpcTLS, "http": httpTLS} {
		if conf == nil {
			continue
		}
		if err := reg.Register(tlsfiles.ExpiryMetric(conf, listener)); err != nil {
			return err
		}
	}
	// Listen before loading models so that a taken port fails fast.
	var (
		servers []func(context.Context) error
		errc    = make(chan error, 4)
		// Ports actually bound (a flag of 0 picks one), as advertised to helix-xds.
		grpcPort, httpPort int
	)
	if o.allowGRPC {
		lis, err := net.Listen("tcp", net.JoinHostPort(o.grpcAddr, strconv.Itoa(o.grpcPort)))
		if err != nil {
			return fmt.Errorf("gRPC listener: %w", err)
		}
		gopts := grpcapi.ServerOptions(int(o.maxRequestBytes))
		if grpcTLS != nil {
			gopts = append(gopts, grpc.Creds(credentials.NewTLS(grpcTLS)))
		}
		gs := grpc.NewServer(gopts...)
		grpcapi.NewServer(mgr, grpcapi.Options{Logger: log}).Register(gs)
		grpcPort = lis.Addr().(*net.TCPAddr).Port
		go func() { errc <- gs.Serve(lis) }()
		servers = append(servers, func(ctx context.Context) error { return stopGRPC(ctx, gs) })
		log.Info("serving gRPC", "address", lis.Addr().String(), "tls", o.tls.grpc().mode())
	}
	if o.allowHTTP {
		h := httpapi.NewHandler(mgr, httpapi.Options{MaxRequestBytes: o.maxRequestBytes, Logger: log})
		srv, err := listenHTTP(net.JoinHostPort(o.httpAddr, strconv.Itoa(o.httpPort)), h, httpTLS, log, errc)
		if err != nil {
			return fmt.Errorf("HTTP listener: %w", err)
		}
		_, p, _ := net.SplitHostPort(srv.Addr)
		httpPort, _ = strconv.Atoi(p)
		servers = append(servers, srv.Shutdown)
		log.Info("serving HTTP", "address", srv.Addr, "tls", o.tls.http().mode())
	}
	if o.allowMetrics {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		// Liveness and readiness here too: kubelet probes present no client
		// certificate, so they cannot reach the mTLS listeners. The answers
		// carry no model data, as the KServe v2 endpoints they mirror.
		mux.Handle("GET /v2/health/live", healthHandler(mgr.Live))
		mux.Handle("GET /v2/health/ready", healthHandler(mgr.Ready))
		// Plaintext, as Triton's: Prometheus scrapes it inside the cluster.
		srv, err := listenHTTP(net.JoinHostPort(o.metricsAddr, strconv.Itoa(o.metricsPort)), mux, nil, log, errc)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		servers = append(servers, srv.Shutdown)
		log.Info("serving metrics", "address", srv.Addr)
	}

	if err := mgr.Start(ctx); err != nil {
		return err
	}
	log.Info("helix-worker started", "repository", o.repository, "control_mode", o.controlMode, "ready", mgr.Ready())

	// Registration stops before the servers drain, so that Envoy stops
	// routing here first; it has its own context for that order.
	regCtx, stopRegistration := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRegistration()
	regDone := make(chan struct{})
	if o.xdsAddress == "" {
		close(regDone)
	} else {
		tlsCfg, err := registration.LoadClientTLS(o.xdsCAFile, o.xdsCertFile, o.xdsKeyFile)
		if err != nil {
			return fmt.Errorf("--xds-ca-file/--xds-cert-file/--xds-key-file: %w", err)
		}
		go func() {
			defer close(regDone)
			err := registration.Run(regCtx, registration.Config{
				XDSAddress: o.xdsAddress,
				TLS:        tlsCfg,
				Address:    o.advertiseAddress,
				GRPCPort:   grpcPort,
				HTTPPort:   httpPort,
				Models:     registration.ModelsFrom(mgr),
				Ready:      mgr.Ready,
				Logger:     log,
			})
			if err != nil {
				errc <- fmt.Errorf("registration with helix-xds: %w", err)
			}
		}()
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
		log.Error("server failed", "error", err)
	}
	stopRegistration()
	<-regDone // bounded by registration's DeregisterTimeout (2s)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Duration(o.exitTimeoutSecs)*time.Second)
	defer cancel()
	for _, stop := range servers {
		if serr := stop(shutdownCtx); serr != nil {
			log.Warn("stopping server", "error", serr)
		}
	}
	if cerr := mgr.Close(shutdownCtx); cerr != nil {
		log.Warn("unloading models", "error", cerr)
	}
	return err
}

// openGPUs finds the GPUs through NVML. No NVML or no GPU is one log line
// ("0 GPUs") and a nil *gpu.NVML, which has no GPUs: the CPU path serves.
func openGPUs(o *options, log *slog.Logger) *gpu.NVML {
	nv, err := gpu.Open(gpu.Options{LibraryPath: o.nvmlLibrary, Logger: log})
	if err != nil {
		level := slog.LevelInfo
		if o.nvmlLibrary != "" {
			level = slog.LevelWarn // asked for explicitly
		}
		log.Log(context.Background(), level, "0 GPUs", "reason", err.Error())
		return nil
	}
	gs := nv.GPUs()
	if len(gs) == 0 {
		log.Info("0 GPUs", "reason", "NVML lists none", "driver", nv.DriverVersion())
		return nv
	}
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = fmt.Sprintf("%d:%s:%s", g.Index, g.Name, g.UUID)
	}
	log.Info("GPUs found", "count", len(gs), "driver", nv.DriverVersion(), "gpus", strings.Join(names, ","))
	return nv
}

// listenHTTP serves h on addr, over TLS when tlsConf is not nil; the
// server's own errors (failed TLS handshakes among them) go to log.
func listenHTTP(addr string, h http.Handler, tlsConf *tls.Config, log *slog.Logger, errc chan<- error) (*http.Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	bound := lis.Addr().String()
	if tlsConf != nil {
		lis = tls.NewListener(lis, tlsConf)
	}
	srv := &http.Server{
		Addr:              bound,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return srv, nil
}

// stopGRPC lets in-flight RPCs finish, then forces the rest when ctx ends.
func stopGRPC(ctx context.Context, gs *grpc.Server) error {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		gs.Stop()
		return ctx.Err()
	}
}

// healthHandler answers 200 when ok() holds and 503 when not, with no body.
func healthHandler(ok func() bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if ok() {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
}
