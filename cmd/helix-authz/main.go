// Command helix-authz is HelixFlow's OAuth2 authorization server
// (client-credentials tokens as RFC 9068 JWTs), its Envoy ext_authz
// service, and its admin API, on Postgres.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/extauthz/accounts"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/extauthz/keys"
	"github.com/helixflow/helixflow/extauthz/mail"
	"github.com/helixflow/helixflow/extauthz/oauth"
	"github.com/helixflow/helixflow/extauthz/password"
	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/extauthz/server"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/daemon"
	"github.com/helixflow/helixflow/internal/httpserver"
	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/netaddr"
	"github.com/helixflow/helixflow/internal/secretfile"
	"github.com/helixflow/helixflow/internal/sourcelimit"
	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/internal/tlsfiles"
	"github.com/helixflow/helixflow/internal/version"
)

type options struct {
	databaseURL    string
	migrate        bool
	kekFile        string
	pepperFile     string
	adminTokenFile string
	gatewayConfig  string

	// Redis holding the plans' rate-limit counters.
	redisAddress, redisPasswordFile, redisCAFile string
	redisTLS                                     bool

	issuer, audience string
	tokenLifetime    time.Duration
	signingAlg       string
	rotationPeriod   time.Duration
	publishAhead     time.Duration
	auditRetention   time.Duration

	httpListen, grpcListen, adminListen, metricsListen string
	tlsCert, tlsKey, clientCA                          string
	plaintextLoopback                                  bool

	// Per-source-address limit of /oauth2/*; Rate 0: none.
	oauthLimit sourcelimit.Config

	// The people's mails; no SMTP address, no people's API. The password
	// comes from a file or the environment, never a flag.
	smtp             mail.SMTPConfig
	smtpPasswordFile string
	publicURL        string

	// People's sessions, passwords and mailed links.
	sessionIdle, sessionLifetime, tokenSessionLifetime time.Duration
	refreshTokenLifetime                               time.Duration
	portalDemoModel                                    string
	password                                           password.Params
	passwordMemory, passwordIterations                 uint
	passwordParallelism                                uint
	passwordMaxConcurrent                              int
	emailVerifyLifetime, passwordResetLifetime         time.Duration

	// How often helix-authz's own usage counts go into the ledger.
	usageFlushInterval time.Duration

	// helix-xds's model catalogue (mTLS with helix-authz's identity).
	xds catalog.DialConfig

	log       telemetry.LogConfig
	telemetry telemetry.Config
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("helix-authz", flag.ContinueOnError)
	fs.StringVar(&o.databaseURL, "database-url", "", "Postgres URL without a password (default: env HELIX_DATABASE_URL, which may hold one)")
	fs.BoolVar(&o.migrate, "migrate", true, "apply database migrations at start")
	fs.StringVar(&o.kekFile, "kek-file", "", "file holding the 32-byte key-encryption key for signing keys (raw, hex or base64); env HELIX_AUTHZ_KEK holds it instead")
	fs.StringVar(&o.pepperFile, "secret-pepper-file", "", "file holding a server-side pepper (at least 32 characters) for client-secret and API-key hashes; required when any listener is off loopback; changing it invalidates every secret")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", "", "file holding the admin API token (env HELIX_ADMIN_TOKEN holds it instead); no token, no admin API")
	fs.StringVar(&o.gatewayConfig, "gateway-config", "", "the gateway config file helix-xds reads (required): Check counts every request against its plans' limits, the admin API gives clients only its plans (a new one its default plan), and both follow it as it changes")
	fs.StringVar(&o.redisAddress, "redis-address", "", "Redis host:port holding the plans' rate-limit counters (a Redis Cluster is found from it); required when the gateway config has a ratelimit section. Replicas share it")
	fs.StringVar(&o.redisPasswordFile, "redis-password-file", "", "file holding Redis's password (AUTH), if it has one; env HELIX_REDIS_PASSWORD holds it instead")
	fs.BoolVar(&o.redisTLS, "redis-tls", false, "connect to Redis over TLS")
	fs.StringVar(&o.redisCAFile, "redis-ca-file", "", "CA of Redis's TLS certificate (with --redis-tls; default: the system roots)")
	fs.StringVar(&o.issuer, "issuer", "", "issuer URL: the iss of tokens and the base of the OAuth2 endpoints as clients reach them (required)")
	fs.StringVar(&o.audience, "audience", "helixflow", "audience tokens are issued for and checked against")
	fs.DurationVar(&o.tokenLifetime, "token-lifetime", 5*time.Minute, "access token lifetime (at most 1h)")
	fs.StringVar(&o.signingAlg, "signing-alg", keys.ES256, "algorithm of new signing keys: ES256 or RS256")
	fs.DurationVar(&o.rotationPeriod, "key-rotation-period", 24*time.Hour, "how long a signing key signs before the next one takes over")
	fs.DurationVar(&o.publishAhead, "key-publish-ahead", 5*time.Minute, "how long a new key is in the JWKS before it signs")
	fs.DurationVar(&o.auditRetention, "audit-retention", audit.DefaultRetention, "how long audit rows are kept; older ones are pruned hourly, the chain kept verifiable from an anchor (0: kept for ever)")
	fs.StringVar(&o.httpListen, "http-listen", "127.0.0.1:8090", "OAuth2 endpoints (token, introspect, revoke, metadata, JWKS)")
	fs.StringVar(&o.grpcListen, "grpc-listen", "127.0.0.1:9001", "Envoy ext_authz Authorization service (gRPC)")
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:8091", "admin API")
	fs.StringVar(&o.metricsListen, "metrics-listen", "127.0.0.1:9091", "Prometheus metrics")
	fs.StringVar(&o.tlsCert, "tls-cert-file", "", "TLS certificate for the OAuth2, gRPC and admin listeners")
	fs.StringVar(&o.tlsKey, "tls-key-file", "", "TLS private key")
	fs.StringVar(&o.clientCA, "client-ca-file", "", "CA whose client certificates the gRPC listener requires (mTLS from Envoy)")
	fs.BoolVar(&o.plaintextLoopback, "plaintext-loopback", false, "allow listeners on loopback addresses without TLS (local development only)")
	fs.Float64Var(&o.oauthLimit.Rate, "oauth-rate-limit", 100, "requests per second each source address may make to /oauth2/* (429 beyond); 0: no limit")
	fs.IntVar(&o.oauthLimit.Burst, "oauth-rate-burst", 200, "requests a source address may make to /oauth2/* at once")
	fs.IntVar(&o.oauthLimit.MaxSources, "oauth-rate-sources", sourcelimit.DefaultMaxSources, "source addresses remembered by the /oauth2/* limit (least recently seen forgotten first)")
	fs.Func("trusted-proxies", "comma-separated addresses or CIDR prefixes of proxies whose X-Forwarded-For names the source address, for the /oauth2/* limit and the people's API (throttles, audit trail) (default none: the peer is the source)", func(v string) (err error) {
		o.oauthLimit.TrustedProxies, err = sourcelimit.ParsePrefixes(v)
		return err
	})
	fs.StringVar(&o.smtp.Address, "smtp-address", "", "SMTP server (host:port) that sends the people's mails (address verification, password reset); none: the people's API (/api/v1, sign-up, login) is off")
	fs.StringVar(&o.smtp.TLS, "smtp-tls", mail.TLSStartTLS, "SMTP TLS: starttls (required, port 587), tls (implicit, port 465) or none (only to a loopback server)")
	fs.StringVar(&o.smtp.CAFile, "smtp-ca-file", "", "CA of the SMTP server's certificate (default: the system roots); read at each delivery")
	fs.StringVar(&o.smtp.Username, "smtp-username", "", "SMTP login (AUTH); none: no login")
	fs.StringVar(&o.smtpPasswordFile, "smtp-password-file", "", "file holding the SMTP password (env HELIX_SMTP_PASSWORD holds it instead)")
	fs.StringVar(&o.smtp.From, "mail-from", "", "sender address of the mails (required with --smtp-address)")
	fs.StringVar(&o.publicURL, "public-url", "", "base URL of the links in mails, where people reach helix-authz's pages (default: --issuer)")
	fs.DurationVar(&o.sessionIdle, "session-idle-timeout", session.DefaultIdleTimeout, "a browser session (the __Host-helix_session cookie) nobody used for this long ends")
	fs.DurationVar(&o.sessionLifetime, "session-lifetime", session.DefaultLifetime, "a browser session ends this long after its login, used or not")
	fs.DurationVar(&o.tokenSessionLifetime, "token-session-lifetime", session.DefaultTokenLifetime, "an app's sign-in (helixctl login: its refresh-token chain) ends this long after it began")
	fs.StringVar(&o.portalDemoModel, "portal-demo-model", "simple", "model the developer portal's home page demo calls with a 5-minute token of the first-party client helix-portal-demo (ensured at start; scope models:<model>:infer, default plan); \"\" turns the demo off")
	fs.DurationVar(&o.refreshTokenLifetime, "refresh-token-lifetime", oauth.DefaultRefreshTokenLifetime, "a person's refresh token unused this long expires (each refresh gives a new one; --token-session-lifetime bounds the chain)")
	fs.UintVar(&o.passwordMemory, "password-memory-kib", uint(password.Minimum.MemoryKiB), "argon2id memory of new password hashes in KiB (at least OWASP's minimum, the default); raising it rehashes each password at its next login")
	fs.UintVar(&o.passwordIterations, "password-iterations", uint(password.Minimum.Iterations), "argon2id iterations of new password hashes (at least the default)")
	fs.UintVar(&o.passwordParallelism, "password-parallelism", uint(password.Minimum.Parallelism), "argon2id parallelism of new password hashes (at least the default, at most 255)")
	fs.IntVar(&o.passwordMaxConcurrent, "password-max-concurrent", 0, "password hashes computed at once (each takes --password-memory-kib of memory; more wait, up to 2 s, then 503); 0: one per CPU (GOMAXPROCS)")
	fs.DurationVar(&o.emailVerifyLifetime, "email-verify-lifetime", accounts.DefaultVerifyLinkLifetime, "how long a mailed address-verification or email-change link works")
	fs.DurationVar(&o.passwordResetLifetime, "password-reset-lifetime", accounts.DefaultResetLinkLifetime, "how long a mailed password-reset link works")
	fs.StringVar(&o.xds.Address, "xds-address", "", "helix-xds's gRPC address (host:port), whose model catalogue GET /api/v1/models serves filtered by caller and the admin API checks a new rollout against; none: the catalogue answers 503, starting a rollout 501")
	fs.StringVar(&o.xds.CAFile, "xds-ca-file", "", "CA bundle (PEM) that signs helix-xds's certificate (required with --xds-address)")
	fs.StringVar(&o.xds.CertFile, "xds-cert-file", "", "client certificate (PEM) helix-authz presents to helix-xds: it must carry helix-authz's identity; re-read on each connection (required with --xds-address)")
	fs.StringVar(&o.xds.KeyFile, "xds-key-file", "", "private key (PEM) of --xds-cert-file")
	fs.DurationVar(&o.usageFlushInterval, "usage-flush-interval", server.DefaultUsageFlushInterval, "how often helix-authz writes its own usage counts (requests refused over a plan's limit) into the usage ledger; a kill -9 loses at most this much of them")
	o.log.RegisterFlags(fs)
	o.telemetry.RegisterFlags(fs)
	showVersion := version.AddFlag(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *showVersion {
		return nil, version.ErrRequested
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := o.log.Validate(); err != nil {
		return nil, err
	}
	if err := o.telemetry.Validate(); err != nil {
		return nil, err
	}
	if secretfile.URLHoldsPassword(o.databaseURL) {
		return nil, errors.New("--database-url holds a password, which the command line shows to every user of the machine; put the URL in HELIX_DATABASE_URL")
	}
	if o.databaseURL == "" {
		o.databaseURL = os.Getenv("HELIX_DATABASE_URL")
	}
	if o.databaseURL == "" {
		return nil, errors.New("--database-url or HELIX_DATABASE_URL is required")
	}
	if o.issuer == "" {
		return nil, errors.New("--issuer is required")
	}
	if o.gatewayConfig == "" {
		return nil, errors.New("--gateway-config is required: it holds the plans and their limits")
	}
	if o.redisCAFile != "" && !o.redisTLS {
		return nil, errors.New("--redis-ca-file needs --redis-tls")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together")
	}
	if o.oauthLimit.Rate != 0 {
		if err := o.oauthLimit.Validate(); err != nil {
			return nil, fmt.Errorf("--oauth-rate-limit, --oauth-rate-burst, --oauth-rate-sources: %w", err)
		}
	}
	if o.smtp.Address == "" {
		for name, v := range map[string]string{"--smtp-ca-file": o.smtp.CAFile, "--smtp-username": o.smtp.Username,
			"--smtp-password-file": o.smtpPasswordFile, "--mail-from": o.smtp.From} {
			if v != "" {
				return nil, fmt.Errorf("%s needs --smtp-address", name)
			}
		}
	}
	if o.passwordMemory > math.MaxUint32 || o.passwordIterations > math.MaxUint32 || o.passwordParallelism > math.MaxUint8 {
		return nil, errors.New("--password-memory-kib, --password-iterations or --password-parallelism is out of range")
	}
	if o.passwordMaxConcurrent < 0 {
		return nil, errors.New("--password-max-concurrent must not be negative (0: one per CPU)")
	}
	o.password = password.Params{MemoryKiB: uint32(o.passwordMemory), Iterations: uint32(o.passwordIterations), Parallelism: uint8(o.passwordParallelism)}
	if err := o.password.Validate(); err != nil {
		return nil, fmt.Errorf("--password-memory-kib, --password-iterations, --password-parallelism: %w", err)
	}
	for name, d := range map[string]time.Duration{"--session-idle-timeout": o.sessionIdle, "--session-lifetime": o.sessionLifetime,
		"--token-session-lifetime": o.tokenSessionLifetime, "--email-verify-lifetime": o.emailVerifyLifetime,
		"--password-reset-lifetime": o.passwordResetLifetime, "--refresh-token-lifetime": o.refreshTokenLifetime} {
		if d <= 0 {
			return nil, fmt.Errorf("%s %s must be positive", name, d)
		}
	}
	if o.sessionIdle > o.sessionLifetime {
		return nil, fmt.Errorf("--session-idle-timeout %s is longer than --session-lifetime %s", o.sessionIdle, o.sessionLifetime)
	}
	if o.xds.Address != "" {
		if err := o.xds.Validate(); err != nil {
			return nil, errors.New("--xds-address needs --xds-ca-file, --xds-cert-file and --xds-key-file")
		}
	} else if o.xds.CAFile != "" || o.xds.CertFile != "" || o.xds.KeyFile != "" {
		return nil, errors.New("--xds-ca-file, --xds-cert-file and --xds-key-file need --xds-address")
	}
	if o.usageFlushInterval <= 0 {
		return nil, fmt.Errorf("--usage-flush-interval %s must be positive", o.usageFlushInterval)
	}
	if o.auditRetention < 0 {
		return nil, fmt.Errorf("--audit-retention %s must not be negative (0 keeps every row)", o.auditRetention)
	}
	if o.tokenLifetime <= 0 || o.tokenLifetime > time.Hour {
		return nil, fmt.Errorf("--token-lifetime %s must be in (0, 1h]", o.tokenLifetime)
	}
	// Secure by default: a listener without TLS must be on loopback and
	// explicitly allowed.
	if o.tlsCert == "" {
		for name, addr := range map[string]string{"--http-listen": o.httpListen, "--grpc-listen": o.grpcListen} {
			if !o.plaintextLoopback || !netaddr.Loopback(addr) {
				return nil, fmt.Errorf("%s %s: TLS is required (--tls-cert-file/--tls-key-file); plaintext is allowed only on loopback with --plaintext-loopback", name, addr)
			}
		}
	}
	if o.tlsCert == "" && !netaddr.Loopback(o.adminListen) {
		return nil, fmt.Errorf("--admin-listen %s: the admin API without TLS listens on loopback only", o.adminListen)
	}
	// Off loopback is a deployment: a stolen database alone must not let
	// anyone confirm a guessed secret, so hashes need the pepper.
	if o.pepperFile == "" {
		for _, l := range [][2]string{{"--http-listen", o.httpListen}, {"--grpc-listen", o.grpcListen},
			{"--admin-listen", o.adminListen}, {"--metrics-listen", o.metricsListen}} {
			if !netaddr.Loopback(l[1]) {
				return nil, fmt.Errorf("%s %s: --secret-pepper-file is required when any listener is off loopback", l[0], l[1])
			}
		}
	}
	return o, nil
}

// redisOptions say how to reach the Redis of the rate-limit counters.
func redisOptions(o *options) (ratelimit.RedisOptions, error) {
	r := ratelimit.RedisOptions{Address: o.redisAddress}
	password, err := secretfile.Read("--redis-password-file", o.redisPasswordFile, "HELIX_REDIS_PASSWORD")
	if err != nil {
		return r, err
	}
	r.Password = password
	if o.redisTLS {
		host, _, err := net.SplitHostPort(o.redisAddress)
		if err != nil {
			return r, fmt.Errorf("--redis-address %q: %w", o.redisAddress, err)
		}
		r.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		if o.redisCAFile != "" {
			pem, err := os.ReadFile(o.redisCAFile)
			if err != nil {
				return r, fmt.Errorf("--redis-ca-file: %w", err)
			}
			r.TLS.RootCAs = x509.NewCertPool()
			if !r.TLS.RootCAs.AppendCertsFromPEM(pem) {
				return r, fmt.Errorf("--redis-ca-file %s: no PEM certificate in it", o.redisCAFile)
			}
		}
	}
	return r, nil
}

// mailSender is the SMTP sender of the people's mails; nil without
// --smtp-address.
func mailSender(o *options) (mail.Sender, error) {
	if o.smtp.Address == "" {
		return nil, nil
	}
	cfg := o.smtp
	password, err := secretfile.Read("--smtp-password-file", o.smtpPasswordFile, "HELIX_SMTP_PASSWORD")
	if err != nil {
		return nil, err
	}
	cfg.Password = password
	s, err := mail.NewSMTP(cfg)
	if err != nil {
		return nil, fmt.Errorf("--smtp-*, --mail-from: %w", err)
	}
	return s, nil
}

// minPepper is the shortest pepper accepted: 32 characters (such as 16
// random bytes in hex) put a guess of it out of reach.
const minPepper = 32

// readPepper reads --secret-pepper-file; nil when it is not given.
func readPepper(file string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	pepper, err := secretfile.Read("--secret-pepper-file", file, "")
	if err != nil {
		return nil, err
	}
	if len(pepper) < minPepper {
		return nil, fmt.Errorf("--secret-pepper-file %s: %d characters; want at least %d (openssl rand -hex 32)", file, len(pepper), minPepper)
	}
	return []byte(pepper), nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	version.ExitOnFlagError("helix-authz", err)
	log, err := o.log.NewLogger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helix-authz:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdownTracing, err := telemetry.Setup(ctx, "helix-authz", o.telemetry)
	if err != nil {
		log.Error("helix-authz stopped", "error", err)
		os.Exit(1)
	}
	err = serve(ctx, o, log)
	telemetry.Shutdown(shutdownTracing, telemetry.FlushTimeout, log)
	if err != nil {
		log.Error("helix-authz stopped", "error", err)
		os.Exit(1)
	}
}

// shutdownTimeout: how long token, check and admin requests in flight may
// finish on shutdown.
const shutdownTimeout = 15 * time.Second

func serve(ctx context.Context, o *options, log *slog.Logger) error {
	kekRaw, err := secretfile.Read("--kek-file", o.kekFile, "HELIX_AUTHZ_KEK")
	if err != nil {
		return fmt.Errorf("key-encryption key: %w", err)
	}
	kek, err := keys.ParseKEK([]byte(kekRaw))
	if err != nil {
		return fmt.Errorf("--kek-file / HELIX_AUTHZ_KEK: %w", err)
	}
	pepper, err := readPepper(o.pepperFile)
	if err != nil {
		return err
	}
	adminToken, err := secretfile.Read("--admin-token-file", o.adminTokenFile, "HELIX_ADMIN_TOKEN")
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	redis, err := redisOptions(o)
	if err != nil {
		return err
	}
	mailer, err := mailSender(o)
	if err != nil {
		return err
	}
	if mailer == nil {
		log.Warn("no --smtp-address: the people's API (sign-up, login, password reset) is off, as it cannot work without mail")
	} else {
		log.Info("mail", "smtp", o.smtp.Address, "tls", o.smtp.TLS, "from", o.smtp.From)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(ctx, server.Config{
		DatabaseURL: o.databaseURL, Migrate: o.migrate, KEK: kek, Pepper: pepper, AdminToken: adminToken,
		GatewayConfig: o.gatewayConfig, Redis: redis,
		Issuer: o.issuer, Audience: o.audience, TokenLifetime: o.tokenLifetime, SigningAlg: o.signingAlg,
		RotationPeriod: o.rotationPeriod, PublishAhead: o.publishAhead, AuditRetention: o.auditRetention,
		Mail: mailer, PublicURL: o.publicURL,
		SessionIdleTimeout: o.sessionIdle, SessionLifetime: o.sessionLifetime, TokenSessionLifetime: o.tokenSessionLifetime,
		RefreshTokenLifetime: o.refreshTokenLifetime, PortalDemoModel: o.portalDemoModel, Password: o.password, PasswordMaxConcurrent: o.passwordMaxConcurrent,
		EmailVerifyLifetime: o.emailVerifyLifetime, PasswordResetLifetime: o.passwordResetLifetime, TrustedProxies: o.oauthLimit.TrustedProxies,
		UsageFlushInterval: o.usageFlushInterval, Catalog: o.xds,
		Registerer: reg, Logger: log,
	})
	if err != nil {
		return err
	}
	defer srv.Close() // after every server has drained
	if o.xds.Address == "" {
		log.Warn("no --xds-address: the model catalogue (GET /api/v1/models) answers 503 not configured")
	} else {
		log.Info("model catalogue", "xds_address", o.xds.Address)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	srv.Run(runCtx)

	tlsConf, err := serverTLS(o)
	if err != nil {
		return err
	}
	if tlsConf != nil {
		if err := reg.Register(tlsfiles.ExpiryMetric(tlsConf, "https")); err != nil {
			return err
		}
	}
	var g run.Group
	g.Add(run.ContextHandler(ctx))
	// Each listener is opened here, so that a taken port fails the start
	// before anything serves.
	addHTTP := func(flagName, addr string, h http.Handler, conf *tls.Config) error {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s: %w", flagName, err)
		}
		if conf != nil {
			lis = tls.NewListener(lis, conf)
		}
		g.Add(daemon.HTTP(httpserver.New(h, log), lis, shutdownTimeout, log))
		return nil
	}
	oauthHandler := http.Handler(srv.Public)
	if o.oauthLimit.Rate > 0 {
		cfg := o.oauthLimit
		cfg.Name, cfg.Registerer = "oauth", reg
		l, err := sourcelimit.New(cfg)
		if err != nil {
			return err
		}
		oauthHandler = oauth.LimitSources(oauthHandler, l)
	}
	if err := addHTTP("--http-listen", o.httpListen, oauthHandler, tlsConf); err != nil {
		return err
	}
	log.Info("serving OAuth2", "address", o.httpListen, "issuer", o.issuer, "tls", tlsConf != nil,
		"per_source_rate", o.oauthLimit.Rate, "per_source_burst", o.oauthLimit.Burst)

	gs, err := grpcServer(o, srv, reg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", o.grpcListen)
	if err != nil {
		return fmt.Errorf("--grpc-listen: %w", err)
	}
	g.Add(daemon.GRPC(gs, lis, shutdownTimeout, log))
	log.Info("serving ext_authz and the usage ledger", "address", o.grpcListen, "mtls", o.clientCA != "")

	if srv.Admin != nil {
		adminTLS := tlsConf
		if netaddr.Loopback(o.adminListen) {
			adminTLS = nil // a local helixctl reaches a loopback admin API over http
		}
		if err := addHTTP("--admin-listen", o.adminListen, srv.Admin, adminTLS); err != nil {
			return err
		}
		log.Info("serving admin API", "address", o.adminListen)
	} else {
		log.Warn("no admin token (--admin-token-file or HELIX_ADMIN_TOKEN): admin API off")
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", telemetry.MetricsHandler(reg)) // OpenMetrics: the exemplars
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := srv.Store.Ping(r.Context()); err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if err := addHTTP("--metrics-listen", o.metricsListen, mux, nil); err != nil {
		return err
	}
	err = daemon.Run(&g)
	log.Info("stopped")
	return err
}

// serverTLS is the HTTP listeners' TLS (no client certificates); nil
// without --tls-cert-file.
func serverTLS(o *options) (*tls.Config, error) {
	if o.tlsCert == "" {
		return nil, nil
	}
	return tlsfiles.ServerConfig(o.tlsCert, o.tlsKey, "")
}

// grpcServer serves ext_authz (Check), the usage Ledger and Limits (workers'
// per-message plan limits), with mTLS when
// configured. The handshake admits Envoy and workers
// (identity.AuthzListenerPeer); each call is then admitted only from its
// service's callers (server.Admission): a worker's certificate, from the
// same CA, must not ask for verdicts, nor Envoy's write the ledger.
// Without TLS no caller has an identity: Check serves (loopback
// development) and the Ledger and Limits refuse every call.
func grpcServer(o *options, srv *server.Server, reg prometheus.Registerer) (*grpc.Server, error) {
	opts := server.GRPCOptions()
	if o.tlsCert != "" {
		conf, err := tlsfiles.ServerConfig(o.tlsCert, o.tlsKey, o.clientCA, func(c *tls.Config) {
			c.VerifyConnection = identity.AuthzListenerPeer
		})
		if err != nil {
			return nil, err
		}
		if err := reg.Register(tlsfiles.ExpiryMetric(conf, "grpc")); err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(conf)))
		opts = append(opts, server.Admission()...)
	}
	gs := grpc.NewServer(opts...)
	srv.Check.Register(gs)
	srv.Ledger.Register(gs)
	srv.Limits.Register(gs)
	return gs, nil
}
