// Command helix-ratelimit is HelixFlow's rate-limit service: Envoy's
// envoyproxy/ratelimit, run from its Go module, with its counters in Redis
// and its limits served by helix-xds over xDS (derived from the gateway
// config's plans). This command only turns its flags into the service's
// settings, which the service reads from the environment, and refuses
// insecure combinations: TLS towards Envoy and helix-xds unless every
// address is on loopback and --plaintext-loopback says so, debug endpoints
// off loopback. It serves no /json endpoint (see serve).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/envoyproxy/ratelimit/src/settings"
)

type options struct {
	grpcListen, httpListen, debugListen, metricsListen string

	redisAddress, redisPasswordFile, redisCAFile string
	redisTLS                                     bool
	redisTimeout                                 time.Duration
	redisPoolSize                                int
	redisWait                                    time.Duration

	xdsAddress, xdsCAFile, xdsCertFile, xdsKeyFile, xdsServerName string
	nodeID                                                        string

	tlsCert, tlsKey, clientCA string
	clientIDs                 string // clientids.go
	plaintextLoopback         bool

	localCacheBytes int
	logLevel        string
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("helix-ratelimit", flag.ContinueOnError)
	fs.StringVar(&o.grpcListen, "grpc-listen", "127.0.0.1:8081", "gRPC ShouldRateLimit service, called by Envoy")
	fs.StringVar(&o.httpListen, "http-listen", "127.0.0.1:8080", "plain HTTP: /healthcheck only (the service's unauthenticated /json endpoint is not served)")
	fs.StringVar(&o.debugListen, "debug-listen", "127.0.0.1:6070", "plain HTTP debug endpoints (/rlconfig: the limits in force, pprof); loopback only")
	fs.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9102", "Prometheus /metrics (ratelimit_service_* and ratelimit_server_*)")
	fs.StringVar(&o.redisAddress, "redis-address", "", "Redis host:port holding the counters (required)")
	fs.StringVar(&o.redisPasswordFile, "redis-password-file", "", "file with Redis's password (AUTH), if it has one")
	fs.BoolVar(&o.redisTLS, "redis-tls", false, "connect to Redis over TLS")
	fs.StringVar(&o.redisCAFile, "redis-ca-file", "", "CA of Redis's TLS certificate (with --redis-tls; default: the system roots)")
	fs.DurationVar(&o.redisTimeout, "redis-timeout", time.Second, "timeout of one Redis command; Envoy's own ratelimit timeout (gateway config) is usually shorter")
	fs.IntVar(&o.redisPoolSize, "redis-pool-size", 10, "Redis connections")
	fs.DurationVar(&o.redisWait, "redis-wait", 30*time.Second, "at start, wait this long for Redis to accept connections before giving up")
	fs.StringVar(&o.xdsAddress, "xds-address", "", "helix-xds host:port, which serves the limits (required)")
	fs.StringVar(&o.xdsCAFile, "xds-ca-file", "", "CA of helix-xds's certificate")
	fs.StringVar(&o.xdsCertFile, "xds-cert-file", "", "client certificate presented to helix-xds")
	fs.StringVar(&o.xdsKeyFile, "xds-key-file", "", "its private key")
	fs.StringVar(&o.xdsServerName, "xds-server-name", "", "name in helix-xds's certificate (default: the host of --xds-address)")
	fs.StringVar(&o.nodeID, "node-id", "helix-ratelimit", "xDS node id, as helix-xds logs it")
	fs.StringVar(&o.tlsCert, "tls-cert-file", "", "TLS certificate of the gRPC listener (reloaded when its directory changes)")
	fs.StringVar(&o.tlsKey, "tls-key-file", "", "TLS private key")
	fs.StringVar(&o.clientCA, "client-ca-file", "", "CA whose client certificates Envoys must present (required with TLS)")
	fs.StringVar(&o.clientIDs, "client-ids", "", "with TLS (required then): comma-separated SPIFFE IDs whose client certificates may call the gRPC listener, Envoy's (spiffe://helixflow.local/envoy); the stack and the Helm chart pass internal/identity's")
	fs.BoolVar(&o.plaintextLoopback, "plaintext-loopback", false, "allow plaintext gRPC and xDS when every address is on loopback (local development only)")
	fs.IntVar(&o.localCacheBytes, "local-cache-bytes", 0, "in-process cache of keys already over their limit, which then skip Redis (0: off)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version, commit and Go version, and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *showVersion {
		return nil, errVersion
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *options) check() error {
	for name, a := range map[string]string{"--grpc-listen": o.grpcListen, "--http-listen": o.httpListen, "--debug-listen": o.debugListen,
		"--metrics-listen": o.metricsListen, "--redis-address": o.redisAddress, "--xds-address": o.xdsAddress} {
		if a == "" {
			return fmt.Errorf("%s is required", name)
		}
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("%s %q: want host:port", name, a)
		}
	}
	switch {
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return errors.New("--tls-cert-file and --tls-key-file go together")
	case o.tlsCert != "" && o.clientCA == "":
		// Whoever reaches this port can spend any client's quota.
		return errors.New("--client-ca-file is required with TLS: Envoys must present client certificates")
	case o.tlsCert == "" && o.clientCA != "":
		return errors.New("--client-ca-file needs --tls-cert-file and --tls-key-file")
	case o.tlsCert == "" && !(o.plaintextLoopback && loopback(o.grpcListen)):
		return fmt.Errorf("--grpc-listen %s: TLS is required (--tls-cert-file/--tls-key-file/--client-ca-file); plaintext is allowed only on loopback with --plaintext-loopback", o.grpcListen)
	case (o.xdsCertFile == "") != (o.xdsKeyFile == ""):
		return errors.New("--xds-cert-file and --xds-key-file go together")
	case o.xdsCertFile != "" && o.xdsCAFile == "":
		return errors.New("--xds-ca-file is required with --xds-cert-file")
	case o.xdsCertFile == "" && !(o.plaintextLoopback && loopback(o.xdsAddress)):
		return fmt.Errorf("--xds-address %s: mTLS is required (--xds-ca-file/--xds-cert-file/--xds-key-file); plaintext is allowed only on loopback with --plaintext-loopback", o.xdsAddress)
	case !loopback(o.debugListen):
		// pprof, /stats and /rlconfig answer anyone, without TLS.
		return fmt.Errorf("--debug-listen %s: loopback only (its endpoints have no authentication)", o.debugListen)
	case o.redisCAFile != "" && !o.redisTLS:
		return errors.New("--redis-ca-file needs --redis-tls")
	case o.redisTimeout <= 0 || o.redisPoolSize <= 0 || o.localCacheBytes < 0 || o.redisWait < 0:
		return errors.New("--redis-timeout and --redis-pool-size must be positive, --local-cache-bytes and --redis-wait not negative")
	}
	if _, ok := logLevels[o.logLevel]; !ok {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	return o.checkClientIDs() // clientids.go
}

// logLevels maps ours to logrus's, which the service logs with.
var logLevels = map[string]string{"debug": "debug", "info": "info", "warn": "warn", "error": "error"}

// loopback reports whether a host:port is on a loopback host; names other
// than localhost are not, as they may resolve anywhere. (internal/netaddr's
// twin: this module cannot import the main module, see go.mod.)
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// environment is the service's settings for o, as the environment
// variables it reads (envoyproxy/ratelimit src/settings).
func (o *options) environment() (map[string]string, error) {
	hostPort := func(a string) (string, string) { h, p, _ := net.SplitHostPort(a); return h, p }
	env := map[string]string{
		"USE_STATSD":      "false",
		"USE_PROMETHEUS":  "true",
		"PROMETHEUS_ADDR": o.metricsListen,
		"LOG_LEVEL":       logLevels[o.logLevel],
		"LOG_FORMAT":      "json",

		"BACKEND_TYPE":              "redis",
		"REDIS_SOCKET_TYPE":         "tcp",
		"REDIS_TYPE":                "SINGLE",
		"REDIS_URL":                 o.redisAddress,
		"REDIS_TIMEOUT":             o.redisTimeout.String(),
		"REDIS_POOL_SIZE":           strconv.Itoa(o.redisPoolSize),
		"REDIS_TLS":                 strconv.FormatBool(o.redisTLS),
		"REDIS_TLS_CACERT":          o.redisCAFile,
		"LOCAL_CACHE_SIZE_IN_BYTES": strconv.Itoa(o.localCacheBytes),

		"CONFIG_TYPE":                    "GRPC_XDS_SOTW",
		"CONFIG_GRPC_XDS_SERVER_URL":     o.xdsAddress,
		"CONFIG_GRPC_XDS_NODE_ID":        o.nodeID,
		"CONFIG_GRPC_XDS_SERVER_USE_TLS": strconv.FormatBool(o.xdsCertFile != ""),
		// Envoy adds the x-ratelimit-* headers itself (gateway config).
		"LIMIT_RESPONSE_HEADERS_ENABLED": "false",
		// Retry helix-xds sooner than the service's 10 s default.
		"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL": "1s",
		"XDS_CLIENT_BACKOFF_MAX_INTERVAL":     "10s",
	}
	env["HOST"], env["PORT"] = hostPort(o.httpListen)
	env["DEBUG_HOST"], env["DEBUG_PORT"] = hostPort(o.debugListen)
	env["GRPC_HOST"], env["GRPC_PORT"] = hostPort(o.grpcListen)
	if o.xdsCertFile != "" {
		env["CONFIG_GRPC_XDS_CLIENT_TLS_CERT"] = o.xdsCertFile
		env["CONFIG_GRPC_XDS_CLIENT_TLS_KEY"] = o.xdsKeyFile
		env["CONFIG_GRPC_XDS_SERVER_TLS_CACERT"] = o.xdsCAFile
		name := o.xdsServerName
		if name == "" {
			name, _ = hostPort(o.xdsAddress)
		}
		env["CONFIG_GRPC_XDS_SERVER_TLS_SAN"] = name
	}
	if o.tlsCert != "" {
		env["GRPC_SERVER_USE_TLS"] = "true"
		env["GRPC_SERVER_TLS_CERT"] = o.tlsCert
		env["GRPC_SERVER_TLS_KEY"] = o.tlsKey
		// Set: the service requires and verifies client certificates.
		env["GRPC_CLIENT_TLS_CACERT"] = o.clientCA
	} else {
		env["GRPC_SERVER_USE_TLS"] = "false"
	}
	if o.redisPasswordFile != "" {
		b, err := os.ReadFile(o.redisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-password-file: %w", err)
		}
		env["REDIS_AUTH"] = strings.TrimSpace(string(b))
	}
	return env, nil
}

// waitForRedis dials Redis until it accepts a connection: the service
// panics at start when it cannot reach Redis, so say why first.
func waitForRedis(ctx context.Context, addr string, wait time.Duration, log *slog.Logger) error {
	deadline := time.Now().Add(wait)
	for {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis at %s not reachable after %s: %w", addr, wait, err)
		}
		log.Warn("waiting for Redis", "address", addr, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// errVersion: --version was given (print versionString, exit 0).
var errVersion = errors.New("version requested")

func main() {
	o, err := parseFlags(os.Args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		return
	case errors.Is(err, errVersion):
		fmt.Println(versionString())
		return
	case err != nil:
		fmt.Fprintln(os.Stderr, "helix-ratelimit:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	env, err := o.environment()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helix-ratelimit:", err)
		os.Exit(2)
	}
	for k, v := range env {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintln(os.Stderr, "helix-ratelimit:", err)
			os.Exit(2)
		}
	}
	if err := waitForRedis(context.Background(), o.redisAddress, o.redisWait, log); err != nil {
		log.Error("helix-ratelimit cannot start", "error", err)
		os.Exit(1)
	}
	log.Info("helix-ratelimit starting", "grpc", o.grpcListen, "tls", o.tlsCert != "", "redis", o.redisAddress, "xds", o.xdsAddress, "metrics", o.metricsListen)
	s := settings.NewSettings()
	if err := o.restrictClients(&s); err != nil {
		log.Error("helix-ratelimit cannot start", "error", err)
		os.Exit(1)
	}
	serve(s)
}
