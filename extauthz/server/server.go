// Package server assembles helix-authz from its parts: the store, the
// signing keys, the OAuth2 server, the ext_authz Check service, the admin
// API and the caches that keep Check off the database, with the background
// loops that keep them current. Listeners and TLS belong to the binary.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/helixflow/helixflow/extauthz/accounts"
	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/credentials"
	"github.com/helixflow/helixflow/extauthz/gdpr"
	"github.com/helixflow/helixflow/extauthz/keys"
	"github.com/helixflow/helixflow/extauthz/limits"
	"github.com/helixflow/helixflow/extauthz/mail"
	"github.com/helixflow/helixflow/extauthz/oauth"
	"github.com/helixflow/helixflow/extauthz/orgs"
	"github.com/helixflow/helixflow/extauthz/password"
	"github.com/helixflow/helixflow/extauthz/portal"
	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/extauthz/rollouts"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/token"
	"github.com/helixflow/helixflow/extauthz/usage"
	"github.com/helixflow/helixflow/internal/sourcelimit"
	"github.com/helixflow/helixflow/internal/vtcodec"
	"github.com/helixflow/helixflow/migrations"
)

// Config configures helix-authz.
type Config struct {
	DatabaseURL string
	// Migrate applies the migrations before starting.
	Migrate bool
	// KEK seals signing keys (keys.ParseKEK); Pepper keys secret hashes
	// (optional); AdminToken enables the admin API (optional).
	KEK, Pepper []byte
	AdminToken  string
	// GatewayConfig is the gateway config file (xds/config), the home of
	// the plans: the admin API gives clients only its plans, and Check
	// counts requests against their limits. Required, and followed as it
	// changes.
	GatewayConfig string
	// Redis holds the plans' counters; its Address is required when the
	// gateway config has a ratelimit section.
	Redis ratelimit.RedisOptions

	Issuer, Audience string
	TokenLifetime    time.Duration
	SigningAlg       string
	RotationPeriod   time.Duration
	PublishAhead     time.Duration
	// AuditRetention: audit rows older than it are pruned (0: kept for
	// ever; audit.DefaultRetention is --audit-retention's default).
	AuditRetention time.Duration
	// Mail delivers the people's mails (a *mail.SMTP); nil turns the
	// people's API off, as sign-up cannot work without mail. The server
	// sends through a mail.Queue around it (Server.Mail), so that no
	// answer waits on SMTP.
	Mail mail.Sender
	// PublicURL is the base of the links in mails (the pages the public
	// port serves); Issuer when "".
	PublicURL string
	// People's sessions (session.Config's fields; zero: its defaults),
	// argon2id parameters of new password hashes (zero: the minimum), and
	// the lifetimes of mailed verification/email-change and reset links
	// (zero: accounts' defaults).
	SessionIdleTimeout, SessionLifetime, TokenSessionLifetime time.Duration
	Password                                                  password.Params
	// PasswordMaxConcurrent bounds the password hashes computed at once
	// (0: GOMAXPROCS); each takes Password.MemoryKiB of memory.
	PasswordMaxConcurrent                      int
	EmailVerifyLifetime, PasswordResetLifetime time.Duration
	// TrustedProxies are the peers whose X-Forwarded-For names a people's
	// API caller's source address (throttles, audit trail).
	TrustedProxies []netip.Prefix
	// RefreshTokenLifetime is the idle lifetime of people's refresh
	// tokens (--refresh-token-lifetime; zero: oauth's default, 7 days).
	RefreshTokenLifetime time.Duration
	// Catalog reaches helix-xds's model catalogue (--xds-*), which
	// GET /api/v1/models serves filtered by caller; no Address: the
	// catalogue answers 503 "not configured".
	Catalog catalog.DialConfig
	// UsageFlushInterval is how often helix-authz's own usage counts
	// (requests refused over a plan's limit) go into the ledger
	// (--usage-flush-interval; zero: DefaultUsageFlushInterval).
	UsageFlushInterval time.Duration
	// PortalDemoModel is the model of the portal home page's live demo
	// (--portal-demo-model); "" turns the demo off. The portal itself is on
	// with the people's API.
	PortalDemoModel string

	// Registerer receives the metrics (optional).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Server is an assembled helix-authz.
type Server struct {
	Store *store.Store
	Keys  *keys.Manager
	// Audit is the audit trail every part records its actions in.
	Audit *audit.Store
	// OAuth serves the token, introspection, revocation, metadata and JWKS
	// endpoints; Admin the admin API (nil without an admin token).
	OAuth http.Handler
	// Public is everything the public port serves: OAuth at its paths,
	// and the people's JSON API (/api/v1) and pages beside it.
	Public *http.ServeMux
	Admin  http.Handler
	Check  *check.Service
	// Limits counts the messages of streams (ModelStreamInfer, WebSocket)
	// on Check's counters, for workers on the gRPC listener.
	Limits *limits.Service
	// Mail queues the people's mails for delivery (nil without
	// Config.Mail: the people's API is off); Run starts its workers.
	Mail *mail.Queue
	// PublicURL is the base of mailed links (Config.PublicURL or Issuer).
	PublicURL string
	// Sessions resolves people (cookie or bearer) and keeps their
	// sessions; Accounts serves the people's API and pages on Public (nil
	// without Config.Mail).
	Sessions *session.Manager
	Accounts *accounts.Service
	// Catalog is the client of helix-xds's model catalogue (nil without
	// Config.Catalog).
	Catalog *catalog.Client
	// Usage is the usage ledger; Ledger its gRPC service, for workers on
	// the gRPC listener beside Check.
	Usage  *usage.Store
	Ledger *usage.Ledger
	// Portal serves the developer portal's pages on Public (nil without
	// the people's API).
	Portal *portal.Portal

	apiKeys     *credentials.APIKeys
	revocations *credentials.Revocations
	clients     *credentials.Clients
	// lookups counts the database lookups answers needed, by table.
	lookups *prometheus.CounterVec
	// marks: mark id -> channel closed when the mark arrives.
	marks       sync.Map
	plans       *admin.Plans       // the gateway's, for the admin API and the organizations'
	limiter     *ratelimit.Limiter // nil without plan limits
	redis       *ratelimit.Redis
	gatewayFile string
	retention   time.Duration // of audit rows
	log         *slog.Logger
	wg          sync.WaitGroup
	// firstParty is helixctl's client, ensured at start (nil without
	// OAuth for people).
	firstParty *store.Client
	usage      *usageParts
	// demoClient is the portal demo's client, ensured at start (nil
	// without the demo); portalPlans the plans the portal lists.
	demoClient  *store.Client
	portalPlans *planList
}

// New connects to the database and builds every part; Run starts the
// background work.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Migrate {
		if err := migrate(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
	}
	db, err := store.Open(ctx, store.Config{DSN: cfg.DatabaseURL, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	s, err := build(db, cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := s.revocations.Load(ctx); err != nil {
		cfg.Logger.Warn("revoked tokens not loaded yet; checking them in the database", "error", err)
	}
	// Before the clients are loaded, so that the demo works at once.
	if s.demoClient != nil {
		// An admin's changes to it (plan, disabled) are kept.
		if _, err := db.EnsureClient(ctx, s.demoClient); err != nil {
			cfg.Logger.Warn("portal demo client not ensured; the home page's demo fails until a restart ensures it",
				"client_id", s.demoClient.ID, "error", err)
		}
	}
	if err := s.clients.Load(ctx); err != nil {
		cfg.Logger.Warn("clients not loaded yet; checking them in the database", "error", err)
	}
	if err := s.apiKeys.Load(ctx); err != nil {
		cfg.Logger.Warn("API keys not loaded yet; checking them in the database", "error", err)
	}
	if err := s.Keys.Refresh(ctx); err != nil {
		cfg.Logger.Warn("signing keys not loaded yet", "error", err)
	}
	if s.firstParty != nil {
		// helixctl login's client; an admin's changes to it are kept.
		if _, err := db.EnsureClient(ctx, s.firstParty); err != nil {
			cfg.Logger.Warn("first-party client not ensured; helixctl login fails until a restart ensures it",
				"client_id", s.firstParty.ID, "error", err)
		}
	}
	return s, nil
}

func build(db *store.Store, cfg Config) (*Server, error) {
	log := cfg.Logger
	hasher := secret.NewHasher(cfg.Pepper)
	km, err := keys.New(keys.Config{
		Store: db, KEK: cfg.KEK, Alg: cfg.SigningAlg, RotationPeriod: cfg.RotationPeriod,
		PublishAhead: cfg.PublishAhead, TokenLifetime: cfg.TokenLifetime, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Registerer != nil {
		for _, g := range []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "helix_authz_signing_key_age_seconds",
				Help: "How long the current token-signing key has been signing; 0 when no key signs.",
			}, func() float64 { return km.Age().Seconds() }),
			// With the age, the key-past-rotation alert needs no copy of
			// --rotation-period.
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "helix_authz_signing_key_rotation_period_seconds",
				Help: "How long a signing key signs before its successor takes over (--rotation-period).",
			}, func() float64 { return km.RotationPeriod().Seconds() }),
		} {
			if err := cfg.Registerer.Register(g); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	// Unauthenticated callers must not be able to make the database work:
	// this counts every lookup that answering a request needed (zero once
	// the in-memory copies are loaded, whatever ids or keys callers send).
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "helix_authz_db_lookups_total",
		Help: "Database lookups made to answer a check or an OAuth2 client lookup, by table; " +
			"zero while the in-memory copies are loaded and kept current by notifications.",
	}, []string{"table"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(lookups); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	clients := credentials.NewClients(db, log, lookups.WithLabelValues("clients"))
	trail, err := audit.New(audit.Config{Pool: db.Pool(), Registerer: cfg.Registerer, Logger: log})
	if err != nil {
		return nil, err
	}
	privacy, err := gdpr.New(gdpr.Config{Pool: db.Pool(), Audit: trail})
	if err != nil {
		return nil, err
	}
	s := &Server{
		Store: db,
		Keys:  km,
		Audit: trail,
		apiKeys: credentials.NewAPIKeys(credentials.APIKeysConfig{
			Store: db, Clients: clients, Hasher: hasher, Logger: log, Lookups: lookups.WithLabelValues("api_keys"),
		}),
		revocations: credentials.NewRevocations(db, log, lookups.WithLabelValues("revoked_tokens")),
		clients:     clients,
		lookups:     lookups,
		retention:   cfg.AuditRetention,
		log:         log,
	}
	verifier, err := token.NewVerifier(token.VerifierConfig{Issuer: cfg.Issuer, Audience: cfg.Audience, Keys: km})
	if err != nil {
		return nil, err
	}
	s.PublicURL = cfg.PublicURL
	if s.PublicURL == "" {
		s.PublicURL = cfg.Issuer
	}
	// The session manager verifies people's bearer tokens with the OAuth
	// server, which keeps its grants in the manager's token sessions.
	bearer := &lateBearer{}
	if s.Sessions, err = session.New(session.Config{
		DB: db.Pool(), IdleTimeout: cfg.SessionIdleTimeout, Lifetime: cfg.SessionLifetime,
		TokenLifetime: cfg.TokenSessionLifetime, PublicOrigin: s.PublicURL, Bearer: bearer, Logger: log,
		// The issuer's origin is this server's too (helixctl login's
		// /oauth2/authorize and /login) when --public-url is the gateway's.
		OtherOrigins: []string{cfg.Issuer},
	}); err != nil {
		return nil, err
	}
	oauthCfg := oauth.Config{
		Issuer: cfg.Issuer, DefaultAudience: cfg.Audience, TokenLifetime: cfg.TokenLifetime,
		Clients: clients, Revocations: db, Keys: km, Hasher: hasher, Logger: log, Registerer: cfg.Registerer,
	}
	sources := sourcelimit.Sources{Trusted: cfg.TrustedProxies}
	source := sources.String
	if cfg.Mail != nil {
		// OAuth for people needs people, who need the accounts (mail).
		oauthCfg.People = &oauth.People{
			Grants: db, Sessions: s.Sessions, Resolve: s.Sessions.Middleware, Audit: trail,
			RefreshTokenLifetime: cfg.RefreshTokenLifetime, Source: source,
		}
	}
	oauthServer, err := oauth.New(oauthCfg)
	if err != nil {
		return nil, err
	}
	bearer.v = oauthServer
	if cfg.Mail != nil {
		if s.Mail, err = mail.NewQueue(mail.QueueConfig{Sender: cfg.Mail, Registerer: cfg.Registerer, Logger: log}); err != nil {
			return nil, err
		}
	}
	s.OAuth = oauthServer.Handler()
	s.Public = http.NewServeMux()
	s.Public.Handle("/", oauthTracing(s.OAuth))
	if s.Mail != nil {
		passwords, err := password.New(password.Config{Params: cfg.Password, MaxConcurrent: cfg.PasswordMaxConcurrent})
		if err != nil {
			return nil, err
		}
		if s.Accounts, err = accounts.New(accounts.Config{
			DB: db.Pool(), Sessions: s.Sessions, Passwords: passwords, Mail: s.Mail, Audit: trail,
			Eraser: privacy, Exporter: privacy,
			Sources: sources, PublicURL: s.PublicURL,
			VerifyLinkLifetime: cfg.EmailVerifyLifetime, ResetLinkLifetime: cfg.PasswordResetLifetime, Logger: log,
		}); err != nil {
			return nil, err
		}
		s.Accounts.Mount(s.Public)
	}
	if err := s.buildUsage(cfg); err != nil {
		return nil, err
	}
	gw, err := loadGateway(cfg.GatewayConfig)
	if err != nil {
		return nil, err
	}
	s.gatewayFile = cfg.GatewayConfig
	s.plans = admin.NewPlans(gw.PlanNames(), gw.DefaultPlan())
	if s.Accounts != nil {
		// Organizations are people's: on with the people's API.
		orgsAPI, err := orgs.New(orgs.Config{Store: db, Hasher: hasher, Plans: s.plans, Audit: trail, Source: source, Logger: log})
		if err != nil {
			return nil, err
		}
		h := s.Sessions.Middleware(s.Sessions.Require(s.readYourWrites(orgsAPI)))
		s.Public.Handle("/api/v1/orgs", h)
		s.Public.Handle("/api/v1/orgs/", h)
	}
	if oauthCfg.People != nil {
		s.firstParty = oauth.HelixctlClient(gw.DefaultPlan())
	}
	if cfg.AdminToken != "" {
		if s.Admin, err = admin.Handler(admin.Config{Store: db, Keys: km, Hasher: hasher, Plans: s.plans, Token: cfg.AdminToken,
			Audit: trail, Trail: trail, PersonalData: privacy, People: db, UserTokens: oauthServer, Source: source, Logger: log,
			Usage: s.usageAdmin(), Rollouts: rollouts.NewStore(db.Pool()), Models: s.rolloutModels(cfg.Catalog)}); err != nil {
			return nil, fmt.Errorf("admin API: %w", err)
		}
		s.Admin = s.readYourWrites(s.Admin)
	}
	if s.Accounts != nil {
		// The portal is presentation over the people's API: on with it.
		if err := s.mountPortal(cfg, gw); err != nil {
			return nil, err
		}
	}
	if s.Catalog, err = dialCatalog(cfg.Catalog); err != nil {
		return nil, err
	}
	// Last: nothing after it fails, so its connection never leaks.
	if s.limiter, s.redis, err = newLimiter(gw, cfg); err != nil {
		s.closeCatalog()
		return nil, err
	}
	checkCfg := check.Config{
		Verifier: verifier, APIKeys: s.apiKeys, Revocations: s.revocations, Clients: s.clients, Logger: log, Metrics: cfg.Registerer,
		Usage: s.throttles(),
	}
	if s.limiter != nil {
		checkCfg.RateLimits = s.limiter
	}
	s.Check = check.New(checkCfg)
	s.Limits = limits.New(limits.Config{
		Clients: s.clients, Revocations: s.revocations, APIKeys: s.apiKeys, RateLimits: checkCfg.RateLimits,
		Usage: checkCfg.Usage, Logger: log,
	})
	s.mountCatalog(oauthServer)
	return s, nil
}

// GRPCOptions are the Check listener's gRPC server options, TLS aside,
// with a server span per call when tracing is on (call after
// telemetry.Setup; grpcTracing).
func GRPCOptions() []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(1 << 20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// Check is a small, hot call: its requests are decoded and its
		// answers marshalled without reflection, and its streams run on
		// long-lived goroutines whose stacks have grown already (a
		// goroutine per stream grows its stack anew every time: 9% of
		// Check's CPU, profiled).
		grpc.ForceServerCodecV2(vtcodec.Codec{}),
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	}, grpcTracing()...)
}

// Run starts the background work (key rotation, change notifications,
// API-key use accounting, revocation pruning) until ctx ends; Close waits
// for it.
func (s *Server) Run(ctx context.Context) {
	s.wg.Add(4)
	go func() { defer s.wg.Done(); s.Keys.Run(ctx) }()
	go func() { defer s.wg.Done(); s.apiKeys.RunFlusher(ctx, time.Second) }()
	go func() { defer s.wg.Done(); s.listen(ctx) }()
	go func() { defer s.wg.Done(); s.pruneRevoked(ctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.watchGateway(ctx) }()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.Audit.RunRetention(ctx, s.retention, time.Hour) }()
	s.runUsage(ctx)
	if s.Mail != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.Mail.Run(ctx) }()
	}
}

// listen applies change notifications: other replicas' revocations, key
// and client changes (a disabled client's tokens stop working) reach this
// one within the notification delay.
func (s *Server) listen(ctx context.Context) {
	err := s.Store.Listen(ctx, func(c store.Change) {
		switch c.Kind {
		case store.ChangeMark:
			s.marked(c.ID)
			return
		case store.ChangeKeys, store.ChangeResync:
			if err := s.Keys.Refresh(ctx); err != nil {
				s.log.Warn("reload signing keys", "error", err)
			}
		}
		// Clients first: a key's check reads its client.
		s.clients.Changed(ctx, c)
		s.apiKeys.Changed(ctx, c)
		s.revocations.Changed(ctx, c)
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Error("change notifications stopped", "error", err)
	}
}

// pruneRevoked deletes expired revocations and rebuilds the in-memory list
// every ten minutes, which keeps the list bounded by live tokens.
func (s *Server) pruneRevoked(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Store.PruneGrants(ctx, time.Now()); err != nil {
			s.log.Warn("prune expired authorization codes and refresh tokens", "error", err)
		}
		if _, err := s.Store.PruneRevoked(ctx, time.Now()); err != nil {
			s.log.Warn("prune revoked tokens", "error", err)
			continue
		}
		if err := s.revocations.Load(ctx); err != nil {
			s.log.Warn("reload revoked tokens", "error", err)
		}
	}
}

// Close waits for the background work (after Run's ctx ended), records
// pending API-key uses and closes the database.
func (s *Server) Close() {
	s.wg.Wait()
	if s.Accounts != nil {
		s.Accounts.Wait() // sign-up and reset work still writing
	}
	flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.apiKeys.FlushUses(flush); err != nil {
		s.log.Warn("record API key use", "error", err)
	}
	if s.redis != nil {
		s.limiter.Close() // its last counts first
		s.redis.Close()
	}
	s.closeCatalog()
	s.Store.Close()
}

func migrate(ctx context.Context, dsn string) error {
	db, err := migrations.OpenDB(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := migrations.Up(ctx, db); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// lateBearer is the session manager's BearerVerifier, set once the OAuth
// server (which needs the manager) exists.
type lateBearer struct{ v session.BearerVerifier }

func (b *lateBearer) VerifyUserToken(ctx context.Context, raw string) (string, string, []string, error) {
	if b.v == nil {
		return "", "", nil, errors.New("server: no bearer verifier")
	}
	return b.v.VerifyUserToken(ctx, raw)
}
