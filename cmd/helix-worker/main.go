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
	"sync"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/internal/daemon"
	"github.com/helixflow/helixflow/internal/httpserver"
	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/internal/tlsfiles"
	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/version"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/cuda"
	"github.com/helixflow/helixflow/workers/backend/onnxruntime"
	"github.com/helixflow/helixflow/workers/backend/pytorch"
	"github.com/helixflow/helixflow/workers/backend/repeat"
	"github.com/helixflow/helixflow/workers/backend/tensorflow"
	"github.com/helixflow/helixflow/workers/cache"
	"github.com/helixflow/helixflow/workers/gpu"
	"github.com/helixflow/helixflow/workers/grpcapi"
	"github.com/helixflow/helixflow/workers/httpapi"
	"github.com/helixflow/helixflow/workers/models"
	"github.com/helixflow/helixflow/workers/registration"
	"github.com/helixflow/helixflow/workers/shm"
	"github.com/helixflow/helixflow/workers/stats"
	"github.com/helixflow/helixflow/workers/wsapi"
)

type options struct {
	repository      string
	controlMode     string
	loadModels      stringList
	pollSecs        int
	strictReadiness bool
	exitTimeoutSecs int
	serverID        string
	// workerID is --id when given: the id registered with helix-xds.
	// Empty: registration's default, hostname:grpc-port, unique per host
	// where --id's default ("helix-worker") is not.
	workerID string

	httpAddr, grpcAddr, metricsAddr    string
	httpAddrWhy, grpcAddrWhy           string // how the address was chosen, for the log
	httpPort, grpcPort, metricsPort    int
	allowHTTP, allowGRPC, allowMetrics bool
	maxRequestBytes                    int64
	maxDecompressedBytes               int64
	tls                                tlsOptions // tls.go

	ortLibrary      string
	torchLibrary    string
	tfLibrary       string
	nvmlLibrary     string
	allowGPUMetrics bool
	metricsInterval int
	intraOpThreads  int
	interOpThreads  int
	log             telemetry.LogConfig
	telemetry       telemetry.Config

	xdsAddress, xdsCAFile, xdsCertFile, xdsKeyFile, advertiseAddress string
	pool                                                             string

	usageAddress, usageCAFile, usageCertFile, usageKeyFile, usageServerName string
	usageFlushInterval                                                      time.Duration
	usageMaxKeys                                                            int
	limitsAddress                                                           string
	limitsTimeout                                                           time.Duration

	// WebSocket inference (workers/wsapi, docs/websocket.md).
	wsMaxMessageBytes                             int64
	wsMaxInFlight                                 int
	wsPingInterval, wsIdleTimeout, wsWriteTimeout time.Duration

	// System shared memory (workers/shm, docs/worker.md).
	shmMaxRegions int
	// responseCacheBytes sizes the response cache (0: off).
	responseCacheBytes int64
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
	fs.StringVar(&o.serverID, "id", "helix-worker", "server name reported by server metadata and, when given, the worker id registered with helix-xds (default there: hostname:grpc-port)")
	fs.StringVar(&o.httpAddr, "http-address", "", "address the HTTP server binds (default: 0.0.0.0, as Triton, with TLS or --insecure-plaintext; else 127.0.0.1)")
	fs.StringVar(&o.grpcAddr, "grpc-address", "", "address the gRPC server binds (default: 0.0.0.0, as Triton, with TLS or --insecure-plaintext; else 127.0.0.1)")
	fs.StringVar(&o.metricsAddr, "metrics-address", "0.0.0.0", "address the metrics server (plaintext, no inference) binds")
	fs.IntVar(&o.httpPort, "http-port", 8000, "HTTP port")
	fs.IntVar(&o.grpcPort, "grpc-port", 8001, "gRPC port")
	fs.IntVar(&o.metricsPort, "metrics-port", 8002, "Prometheus metrics port")
	fs.BoolVar(&o.allowHTTP, "allow-http", true, "serve HTTP/REST")
	fs.BoolVar(&o.allowGRPC, "allow-grpc", true, "serve gRPC")
	fs.BoolVar(&o.allowMetrics, "allow-metrics", true, "serve Prometheus metrics")
	fs.Int64Var(&o.maxRequestBytes, "max-request-bytes", 64<<20, "largest request body (HTTP) or message (gRPC) accepted")
	fs.Int64Var(&o.maxDecompressedBytes, "max-decompressed-bytes", 0,
		"largest size a compressed HTTP body (Content-Encoding gzip or deflate) may decompress to (0: a quarter of --max-request-bytes)")
	fs.StringVar(&o.ortLibrary, "onnxruntime-library", "", "path of libonnxruntime.so (default: found next to the binary, then in .deps/, then the system)")
	fs.StringVar(&o.torchLibrary, "pytorch-library", "",
		"path of libhelix_torch.so, the shim over libtorch that TorchScript models (pytorch_libtorch) run on, loaded with the first such model (default: found next to the binary, then in .deps/pytorch, then the system); without it those models are UNAVAILABLE with the reason")
	fs.StringVar(&o.tfLibrary, "tensorflow-library", "",
		"path of libtensorflow_cc.so.2 (its folder also holding libtensorflow_framework.so.2), whose C API TensorFlow SavedModels (tensorflow_savedmodel) run on, loaded with the first such model (default: $HELIX_TENSORFLOW_LIB, then found next to the binary, then in .deps/tensorflow, then the system); without it those models are UNAVAILABLE with the reason")
	fs.IntVar(&o.intraOpThreads, "intra-op-threads", 0,
		"intra-op threads per instance, used by ONNX Runtime, libtorch (TorchScript) and TensorFlow models; a model's intra_op_thread_count (INTRA_OP_THREAD_COUNT for TorchScript) parameter overrides it (0: GOMAXPROCS shared among the model's instances, at least 1)")
	fs.IntVar(&o.interOpThreads, "inter-op-threads", 0,
		"inter-op threads per instance, used by ONNX Runtime and TensorFlow models, not libtorch; a model's inter_op_thread_count parameter overrides it (0: ONNX Runtime's default; 1 for TensorFlow)")
	fs.StringVar(&o.nvmlLibrary, "nvml-library", "", "path of NVML, libnvidia-ml.so.1 (default: the dynamic loader's search); without it the worker has 0 GPUs")
	fs.BoolVar(&o.allowGPUMetrics, "allow-gpu-metrics", true, "export GPU metrics (dcgm-exporter's DCGM_FI_DEV_*, Triton's nv_gpu_*) on /metrics")
	fs.IntVar(&o.metricsInterval, "metrics-interval-ms", 2000, "a scrape re-reads GPU metrics from NVML when its last reading is older than this")
	o.log.RegisterFlags(fs)
	o.telemetry.RegisterFlags(fs)
	fs.StringVar(&o.xdsAddress, "xds-address", "", "host:port of helix-xds's worker registry; empty: do not register")
	fs.StringVar(&o.xdsCAFile, "xds-ca-file", "", "CA bundle (PEM) that signs helix-xds's certificate")
	fs.StringVar(&o.xdsCertFile, "xds-cert-file", "", "client certificate (PEM) this worker presents to helix-xds; re-read on each connection")
	fs.StringVar(&o.xdsKeyFile, "xds-key-file", "", "private key (PEM) of --xds-cert-file")
	fs.StringVar(&o.advertiseAddress, "advertise-address", "", "IP or DNS name Envoy reaches this worker at (required with --xds-address)")
	fs.StringVar(&o.pool, "pool", wire.DefaultPool, "worker pool this worker registers in with helix-xds (a-z, 0-9 and '-', at most 63): a traffic policy's variant may name a pool, so that a canary or shadow runs on workers of its own (docs/rollouts.md)")
	fs.StringVar(&o.usageAddress, "usage-address", "", "host:port of helix-authz's gRPC listener (its --grpc-listen), where the worker reports usage per client and model to the usage ledger over mTLS; empty: usage is not counted")
	fs.StringVar(&o.usageCAFile, "usage-ca-file", "", "CA bundle (PEM) that signs helix-authz's certificate, for --usage-address and --limits-address (default: --xds-ca-file)")
	fs.StringVar(&o.usageCertFile, "usage-cert-file", "", "client certificate (PEM, a worker identity) presented to helix-authz; re-read on each connection (default: --xds-cert-file)")
	fs.StringVar(&o.usageKeyFile, "usage-key-file", "", "private key (PEM) of --usage-cert-file (default: --xds-key-file)")
	fs.StringVar(&o.usageServerName, "usage-server-name", "", "name helix-authz's certificate is checked for (default: the host of --usage-address); e.g. the OAuth2 issuer's host when that certificate is publicly issued")
	fs.DurationVar(&o.usageFlushInterval, "usage-flush-interval", usage.DefaultInterval, "how often counted usage is sent to the ledger; a worker killed without its last flush loses at most this much")
	fs.IntVar(&o.usageMaxKeys, "usage-max-keys", usage.DefaultMaxKeys, "most (hour, client, model) keys counted between flushes; requests of further keys are dropped and counted in helix_usage_dropped_total")
	o.limitsFlags(fs)
	fs.Int64Var(&o.wsMaxMessageBytes, "ws-max-message-bytes", wsapi.DefaultMaxMessageBytes, "largest WebSocket inference message accepted; a bigger one closes the connection with 1009")
	fs.IntVar(&o.wsMaxInFlight, "ws-max-in-flight", wsapi.DefaultMaxInFlight, "most messages of one WebSocket connection served at once; beyond it the worker stops reading that connection (backpressure)")
	fs.DurationVar(&o.wsPingInterval, "ws-ping-interval", wsapi.DefaultPingInterval, "how often the worker pings each WebSocket client")
	fs.DurationVar(&o.wsIdleTimeout, "ws-idle-timeout", wsapi.DefaultIdleTimeout, "a WebSocket connection with no message and no pong for this long is closed")
	fs.DurationVar(&o.wsWriteTimeout, "ws-write-timeout", wsapi.DefaultWriteTimeout, "a WebSocket client that does not read an answer within this long loses its connection")
	fs.IntVar(&o.shmMaxRegions, "shm-max-regions", shm.DefaultMaxRegions, "most system shared-memory regions registered at once (Triton's shared memory extension, for clients on this host); 0 turns system shared memory off")
	fs.Int64Var(&o.responseCacheBytes, "response-cache-bytes", 0, "size of the response cache in bytes, shared by the models whose config sets response_cache { enable: true } (Triton's --cache-config local,size=N); 0 turns it off")
	o.tls.register(fs)
	showVersion := version.AddFlag(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *showVersion {
		return nil, version.ErrRequested
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "id" {
			o.workerID = o.serverID
		}
	})
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
	if o.maxDecompressedBytes < 0 || o.maxDecompressedBytes > o.maxRequestBytes {
		return nil, fmt.Errorf("--max-decompressed-bytes %d must be between 0 (a quarter of --max-request-bytes) and --max-request-bytes", o.maxDecompressedBytes)
	}
	if o.wsMaxMessageBytes < 1<<10 || o.wsMaxMessageBytes > 1<<31-1 {
		return nil, fmt.Errorf("--ws-max-message-bytes %d must be between 1 KiB and 2 GiB", o.wsMaxMessageBytes)
	}
	if o.wsMaxInFlight < 1 {
		return nil, fmt.Errorf("--ws-max-in-flight %d must be at least 1", o.wsMaxInFlight)
	}
	if o.wsPingInterval <= 0 || o.wsIdleTimeout <= 0 || o.wsWriteTimeout <= 0 {
		return nil, errors.New("--ws-ping-interval, --ws-idle-timeout and --ws-write-timeout must be positive")
	}
	if o.responseCacheBytes < 0 {
		return nil, fmt.Errorf("--response-cache-bytes %d must not be negative", o.responseCacheBytes)
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
	if err := wire.CheckPoolName(o.pool); err != nil {
		return nil, fmt.Errorf("--pool %q: %w", o.pool, err)
	}
	if err := o.checkUsage(); err != nil {
		return nil, err
	}
	if err := o.log.Validate(); err != nil {
		return nil, err
	}
	if err := o.telemetry.Validate(); err != nil {
		return nil, err
	}
	if err := o.tls.check(); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set["--"+f.Name] = true })
	o.chooseAddresses(set) // tls.go
	if err := checkPlaintext(o); err != nil {
		return nil, err
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	version.ExitOnFlagError("helix-worker", err)
	log, err := o.log.NewLogger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helix-worker:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdownTracing, err := telemetry.Setup(ctx, "helix-worker", o.telemetry)
	if err != nil {
		log.Error("helix-worker stopped", "error", err)
		os.Exit(1)
	}
	err = serve(ctx, o, log)
	telemetry.Shutdown(shutdownTracing, telemetry.FlushTimeout, log)
	if err != nil {
		log.Error("helix-worker stopped", "error", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, o *options, log *slog.Logger) error {
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
	torch, err := pytorch.New(pytorch.Options{
		LibraryPath:    o.torchLibrary,
		IntraOpThreads: o.intraOpThreads,
		AutoThreads:    o.intraOpThreads == 0,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	tfBackend, err := tensorflow.New(tensorflow.Options{
		LibraryPath:    o.tfLibrary,
		IntraOpThreads: o.intraOpThreads,
		InterOpThreads: o.interOpThreads,
		Logger:         log,
	})
	if err != nil {
		return err
	}

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
	var responseCache *cache.Cache
	if o.responseCacheBytes > 0 {
		responseCache = cache.New(o.responseCacheBytes)
	}
	mgr, err := models.New(models.Config{
		Repository:      o.repository,
		ControlMode:     models.ControlMode(o.controlMode),
		StartupModels:   o.loadModels,
		PollInterval:    time.Duration(o.pollSecs) * time.Second,
		Backends:        map[string]backend.Backend{ort.Name(): ort, cuda.Name: cuda.New(cuda.Options{Logger: log, Discovery: gpus}), repeat.Name: repeat.New(), torch.Name(): torch, tensorflow.Name: tfBackend},
		Metrics:         metrics,
		StrictReadiness: o.strictReadiness,
		DrainTimeout:    time.Duration(o.exitTimeoutSecs) * time.Second,
		ResponseCache:   responseCache,
		ServerName:      o.serverID,
		ServerVersion:   version.Version,
		Logger:          log,
	})
	if err != nil {
		return err
	}

	// One registry for both front ends, as Triton shares its manager.
	var shmRegions *shm.Registry
	if o.shmMaxRegions > 0 {
		shmRegions = shm.New(shm.Options{MaxRegions: o.shmMaxRegions})
		defer shmRegions.Close()
	}

	grpcTLS, httpTLS, err := listenerTLSConfigs(o, log)
	if err != nil {
		return err
	}
	counts, stopUsage, err := startUsage(ctx, o, reg, log)
	if err != nil {
		return err
	}
	// Deferred before mgr.Close, so it runs after it, once the servers have
	// drained: the last flush holds the last request's counts.
	defer stopUsage()
	limiter, stopLimits, err := startLimits(o, log)
	if err != nil {
		return err
	}
	defer stopLimits()
	for listener, conf := range map[string]*tls.Config{"grpc": grpcTLS, "http": httpTLS} {
		if conf == nil {
			continue
		}
		if err := reg.Register(tlsfiles.ExpiryMetric(conf, listener)); err != nil {
			return err
		}
	}
	// In-flight requests finish within --exit-timeout-secs on shutdown.
	exitTimeout := time.Duration(o.exitTimeoutSecs) * time.Second
	var (
		g run.Group
		// Ports actually bound (a flag of 0 picks one), as advertised to helix-xds.
		grpcPort, httpPort int
		// servers are added after registration: oklog/run interrupts
		// actors in the order they were added, and registration's
		// interrupt returns only once the worker has deregistered, so
		// Envoy stops routing here before the servers drain.
		servers []func()
	)
	g.Add(run.ContextHandler(ctx))
	// Listen before loading models so that a taken port fails fast.
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
		grpcapi.NewServer(mgr, grpcapi.Options{Logger: log, Usage: counts, Limiter: limiter, SharedMemory: shmRegions}).Register(gs)
		grpcPort = lis.Addr().(*net.TCPAddr).Port
		servers = append(servers, func() { g.Add(daemon.GRPC(gs, lis, exitTimeout, log)) })
		log.Info("serving gRPC", "address", lis.Addr().String(), "tls", o.tls.grpc().mode(), "why", o.grpcAddrWhy)
	}
	if o.allowHTTP {
		lis, err := listen(net.JoinHostPort(o.httpAddr, strconv.Itoa(o.httpPort)), httpTLS)
		if err != nil {
			return fmt.Errorf("HTTP listener: %w", err)
		}
		httpPort = lis.Addr().(*net.TCPAddr).Port
		ws := wsapi.New(mgr, wsapi.Options{
			MaxMessageBytes: o.wsMaxMessageBytes,
			MaxInFlight:     o.wsMaxInFlight,
			PingInterval:    o.wsPingInterval,
			IdleTimeout:     o.wsIdleTimeout,
			WriteTimeout:    o.wsWriteTimeout,
			MaxDecodedBytes: o.maxRequestBytes,
			Usage:           counts,
			Limiter:         limiter,
			Logger:          log,
		})
		srv := httpserver.New(httpapi.NewHandler(mgr, httpapi.Options{MaxRequestBytes: o.maxRequestBytes, MaxDecompressedBytes: o.maxDecompressedBytes, Logger: log, Usage: counts, WebSocket: ws, SharedMemory: shmRegions}), log)
		// Inference requests carry bodies up to --max-request-bytes and wait
		// in the dynamic batcher's queue as long as the model's queue
		// policy allows: a server-wide read or write deadline would cut
		// them off midway. The client (or Envoy's route timeout) owns the
		// deadline; slow headers and idle connections stay bounded.
		srv.ReadTimeout, srv.WriteTimeout = 0, 0
		// Hijacked WebSocket connections are not the HTTP server's to
		// drain: their actor closes them with 1012 once their messages in
		// flight are answered, and the models unload only after that.
		servers = append(servers, func() { g.Add(daemon.HTTP(srv, lis, exitTimeout, log)) }, func() { g.Add(wsDrainActor(ws, exitTimeout, log)) })
		log.Info("serving HTTP", "address", lis.Addr().String(), "tls", o.tls.http().mode(), "why", o.httpAddrWhy)
	}
	if o.allowMetrics {
		mux := http.NewServeMux()
		mux.Handle("/metrics", telemetry.MetricsHandler(reg))
		// Liveness and readiness here too: kubelet probes present no client
		// certificate, so they cannot reach the mTLS listeners. The answers
		// carry no model data, as the KServe v2 endpoints they mirror.
		mux.Handle("GET "+wire.RESTServerLive, healthHandler(mgr.Live))
		mux.Handle("GET "+wire.RESTServerReady, healthHandler(mgr.Ready))
		// Plaintext, as Triton's: Prometheus scrapes it inside the cluster.
		lis, err := listen(net.JoinHostPort(o.metricsAddr, strconv.Itoa(o.metricsPort)), nil)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv := httpserver.New(mux, log)
		servers = append(servers, func() { g.Add(daemon.HTTP(srv, lis, exitTimeout, log)) })
		log.Info("serving metrics", "address", lis.Addr().String(), "tls", "off")
	}

	defer func() {
		// After the servers drained: no request is left to finish.
		ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
		defer cancel()
		if err := mgr.Close(ctx); err != nil {
			log.Warn("unloading models", "error", err)
		}
	}()
	// Models load while the servers already answer (not ready until
	// loaded, as Triton), so that probes see a live worker during a long
	// load.
	started := make(chan struct{})
	modelsCtx, stopModels := context.WithCancel(ctx)
	defer stopModels()
	g.Add(func() error {
		if err := mgr.Start(modelsCtx); err != nil {
			return err
		}
		log.Info("helix-worker started", "repository", o.repository, "control_mode", o.controlMode, "ready", mgr.Ready())
		close(started)
		<-modelsCtx.Done() // poll mode polls until then
		return modelsCtx.Err()
	}, func(error) { stopModels() })

	if o.xdsAddress != "" {
		tlsCfg, err := registration.LoadClientTLS(o.xdsCAFile, o.xdsCertFile, o.xdsKeyFile)
		if err != nil {
			return fmt.Errorf("--xds-ca-file/--xds-cert-file/--xds-key-file: %w", err)
		}
		// Its own context: the caller's ends only after the interrupt.
		regCtx, stopRegistration := context.WithCancel(context.WithoutCancel(ctx))
		regDone := make(chan struct{})
		g.Add(func() error {
			defer close(regDone)
			select { // register once the models are loaded
			case <-started:
			case <-regCtx.Done():
				return regCtx.Err()
			}
			err := registration.Run(regCtx, registration.Config{
				XDSAddress: o.xdsAddress,
				TLS:        tlsCfg,
				WorkerID:   o.workerID,
				Address:    o.advertiseAddress,
				GRPCPort:   grpcPort,
				HTTPPort:   httpPort,
				Pool:       o.pool,
				Models:     registration.ModelsFrom(mgr),
				Info:       registration.InfoFrom(mgr), // for helix-xds's model catalogue
				Ready:      mgr.Ready,
				Logger:     log,
			})
			if err != nil {
				return fmt.Errorf("registration with helix-xds: %w", err)
			}
			return regCtx.Err()
		}, func(error) {
			stopRegistration()
			<-regDone // bounded by registration's DeregisterTimeout (2s)
		})
	}
	for _, add := range servers {
		add()
	}
	err = daemon.Run(&g)
	log.Info("helix-worker stopped")
	return err
}

// wsDrainActor waits for the interrupt, then drains ws within timeout;
// its execute returns only once the connections have ended.
func wsDrainActor(ws *wsapi.Server, timeout time.Duration, log *slog.Logger) (func() error, func(error)) {
	stop := make(chan struct{})
	var once sync.Once
	return func() error {
			<-stop
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := ws.Drain(ctx); err != nil {
				log.Warn("shutdown", "error", err)
			}
			return nil
		}, func(error) {
			once.Do(func() { close(stop) })
		}
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

// listen opens addr, over TLS when tlsConf is not nil.
func listen(addr string, tlsConf *tls.Config) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil || tlsConf == nil {
		return lis, err
	}
	return tls.NewListener(lis, tlsConf), nil
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
