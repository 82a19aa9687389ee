// Package registration is the worker's side of the helix-xds worker
// registry: it registers the worker with its address, models and readiness,
// renews the lease, publishes changes, registers again after helix-xds
// restarts, and deregisters on shutdown.
package registration

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/wire"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
)

// ErrConfig wraps every configuration error Run returns.
var ErrConfig = errors.New("registration config")

// Model is one model the worker serves.
type Model struct {
	Name string
	// Versions are the loaded versions ("1", "2").
	Versions []string
	Ready    bool
	// Info describes the model for the catalogue (Config.Info fills it;
	// nil: listed by name and versions). Read-only once set.
	Info *registryv1.ModelInfo
}

// Config configures Run.
type Config struct {
	// XDSAddress is helix-xds's registry endpoint, host:port.
	XDSAddress string
	// TLS is the client's TLS configuration (CA and client certificate for
	// mTLS). It must be set unless Insecure is true.
	TLS *tls.Config
	// Insecure allows a plaintext connection when TLS is nil. Off by default;
	// meant for tests and local debugging only.
	Insecure bool

	// WorkerID names the worker (default: hostname ":" GRPCPort).
	WorkerID string
	// Address is what Envoy connects to: the worker's IP address or DNS
	// name, never a wildcard bind address. Required.
	Address string
	// GRPCPort is the KServe v2 gRPC port (required); HTTPPort the HTTP one
	// (0: no HTTP).
	GRPCPort, HTTPPort int
	// Pool is the worker pool it belongs to (helix-worker --pool;
	// wire.CheckPoolName; "": wire.DefaultPool): a traffic policy's variant
	// may name a pool, so that a canary or shadow runs on workers of its
	// own (docs/rollouts.md).
	Pool string

	// Models returns the models the worker serves now. When it fails, the
	// lease is still renewed with the models last sent.
	Models func(context.Context) ([]Model, error)
	// Ready reports the worker's overall readiness.
	Ready func() bool
	// Info, when set, describes a ready model for helix-xds's model
	// catalogue (InfoFrom). It is asked when a model or its versions
	// change, and for every model at each periodic renewal (so that a
	// model reloaded with a new config is described again within an
	// Interval); an error leaves that model undescribed.
	Info func(ctx context.Context, model string) (*registryv1.ModelInfo, error)

	// Interval is the time between renewals (default: a third of the lease
	// TTL the registry grants; at most half of it).
	Interval time.Duration
	// CheckInterval is how often Models and Ready are polled between
	// renewals; a change is sent at once (default 250ms; negative: only at
	// renewals and on Changed).
	CheckInterval time.Duration
	// Changed, when set, triggers an immediate check for changes.
	Changed <-chan struct{}
	// RPCTimeout bounds each call (default 5s, at most Interval).
	RPCTimeout time.Duration
	// DeregisterTimeout bounds the deregistration on shutdown (default 2s).
	DeregisterTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries after errors
	// (defaults 100ms and 5s), connection attempts included.
	MinBackoff, MaxBackoff time.Duration

	Logger *slog.Logger
}

const (
	defaultCheckInterval     = 250 * time.Millisecond
	defaultRPCTimeout        = 5 * time.Second
	defaultDeregisterTimeout = 2 * time.Second
	defaultMinBackoff        = 100 * time.Millisecond
	defaultMaxBackoff        = 5 * time.Second
	fallbackTTL              = 10 * time.Second
)

func (cfg *Config) setDefaults() error {
	if cfg.XDSAddress == "" {
		return fmt.Errorf("%w: XDSAddress is required", ErrConfig)
	}
	if _, _, err := net.SplitHostPort(cfg.XDSAddress); err != nil {
		return fmt.Errorf("%w: XDSAddress %q: want host:port: %w", ErrConfig, cfg.XDSAddress, err)
	}
	if cfg.TLS == nil && !cfg.Insecure {
		return fmt.Errorf("%w: TLS is required (set Insecure to allow plaintext)", ErrConfig)
	}
	if cfg.Address == "" {
		return fmt.Errorf("%w: Address (the advertised address) is required", ErrConfig)
	}
	if ip := net.ParseIP(cfg.Address); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%w: Address %q: a wildcard address cannot be connected to; advertise the worker's own address", ErrConfig, cfg.Address)
	}
	if cfg.GRPCPort < 1 || cfg.GRPCPort > 65535 {
		return fmt.Errorf("%w: GRPCPort %d: want 1 to 65535", ErrConfig, cfg.GRPCPort)
	}
	if cfg.HTTPPort < 0 || cfg.HTTPPort > 65535 {
		return fmt.Errorf("%w: HTTPPort %d: want 0 to 65535", ErrConfig, cfg.HTTPPort)
	}
	if cfg.Pool == "" {
		cfg.Pool = wire.DefaultPool
	} else if err := wire.CheckPoolName(cfg.Pool); err != nil {
		return fmt.Errorf("%w: Pool %q: %w", ErrConfig, cfg.Pool, err)
	}
	if cfg.Models == nil || cfg.Ready == nil {
		return fmt.Errorf("%w: Models and Ready are required", ErrConfig)
	}
	if cfg.Interval < 0 || cfg.RPCTimeout < 0 || cfg.DeregisterTimeout < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 {
		return fmt.Errorf("%w: durations must not be negative", ErrConfig)
	}
	if cfg.WorkerID == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("%w: WorkerID unset and no hostname: %w", ErrConfig, err)
		}
		cfg.WorkerID = host + ":" + strconv.Itoa(cfg.GRPCPort)
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = defaultCheckInterval
	}
	if cfg.RPCTimeout == 0 {
		cfg.RPCTimeout = defaultRPCTimeout
	}
	if cfg.DeregisterTimeout == 0 {
		cfg.DeregisterTimeout = defaultDeregisterTimeout
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = max(defaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		return fmt.Errorf("%w: MaxBackoff %v is below MinBackoff %v", ErrConfig, cfg.MaxBackoff, cfg.MinBackoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

// Run keeps the worker registered until ctx ends, then deregisters it (best
// effort, bounded by DeregisterTimeout) and returns nil. Errors talking to
// helix-xds are logged and retried with backoff; only a bad Config is
// returned as an error.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		tc := cfg.TLS.Clone()
		if tc.MinVersion == 0 {
			tc.MinVersion = tls.VersionTLS12
		}
		creds = credentials.NewTLS(tc)
	}
	bc := backoff.DefaultConfig
	bc.BaseDelay, bc.MaxDelay = cfg.MinBackoff, cfg.MaxBackoff
	conn, err := grpc.NewClient(cfg.XDSAddress,
		grpc.WithTransportCredentials(creds),
		// grpc's own reconnect backoff grows to 2 minutes; bound it so that a
		// restarted helix-xds sees the worker again quickly.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: cfg.RPCTimeout}),
	)
	if err != nil {
		return fmt.Errorf("%w: XDSAddress %q: %w", ErrConfig, cfg.XDSAddress, err)
	}
	defer conn.Close()
	c := &client{
		cfg: cfg,
		rpc: registryv1.NewRegistryClient(conn),
		log: cfg.Logger.With("component", "registration", "xds_address", cfg.XDSAddress, "worker_id", cfg.WorkerID),
	}
	c.run(ctx)
	return nil
}

// state is what the worker tells the registry.
type state struct {
	models []Model
	ready  bool
}

func (s state) equal(o state) bool {
	return s.ready == o.ready && slices.EqualFunc(s.models, o.models, func(a, b Model) bool {
		return a.Name == b.Name && a.Ready == b.Ready && slices.Equal(a.Versions, b.Versions)
	})
}

func (s state) proto() []*registryv1.Model {
	out := make([]*registryv1.Model, len(s.models))
	for i, m := range s.models {
		out[i] = &registryv1.Model{Name: m.Name, Versions: m.Versions, Ready: m.Ready, Info: m.Info}
	}
	return out
}

type client struct {
	cfg Config
	rpc registryv1.RegistryClient
	log *slog.Logger

	lease      string
	interval   time.Duration
	rpcTimeout time.Duration
	sent       state
	sentOnce   bool
	backoff    time.Duration
	// infos caches Config.Info's answers by model, for the versions they
	// were asked for (polls between renewals ask only for what changed).
	infos       map[string]cachedInfo
	warnedBound bool
}

type cachedInfo struct {
	versions []string
	info     *registryv1.ModelInfo
}

func (c *client) run(ctx context.Context) {
	renew := time.NewTimer(time.Hour)
	defer renew.Stop()
	var check <-chan time.Time
	if c.cfg.CheckInterval > 0 {
		t := time.NewTicker(c.cfg.CheckInterval)
		defer t.Stop()
		check = t.C
	}
	failing := false // a renewal failed; only the renew timer retries
	for {
		if c.lease == "" {
			if err := c.register(ctx); err != nil {
				if !sleep(ctx, c.nextBackoff()) {
					return
				}
				continue
			}
			c.backoff, failing = 0, false
			renew.Reset(c.interval)
		}

		force := false
		select {
		case <-ctx.Done():
			c.deregister(ctx)
			return
		case <-renew.C:
			force = true
		case <-check:
		case <-c.cfg.Changed:
		}
		if failing && !force {
			continue
		}
		cur, err := c.current(ctx, force)
		if err != nil {
			if !force {
				continue
			}
			c.log.Warn("listing models failed; renewing with the models last sent", "error", err)
			cur = c.sent
		}
		if !force && cur.equal(c.sent) {
			continue
		}
		err = c.renew(ctx, cur)
		switch {
		case err == nil:
			c.backoff, failing = 0, false
			renew.Reset(c.interval)
		case status.Code(err) == codes.NotFound:
			// The lease lapsed or helix-xds restarted: register at once.
			c.log.Info("lease unknown to helix-xds; registering again", "error", err)
			c.lease = ""
		default:
			failing = true
			wait := c.nextBackoff()
			c.log.Warn("lease renewal failed; retrying", "error", err, "retry_in", wait)
			renew.Reset(wait)
		}
	}
}

// current reads the worker's state in canonical order, with the models'
// descriptions (asked again for every model when refresh is set).
func (c *client) current(ctx context.Context, refresh bool) (state, error) {
	tctx, cancel := context.WithTimeout(ctx, c.cfg.RPCTimeout)
	defer cancel()
	models, err := c.cfg.Models(tctx)
	if err != nil {
		return state{}, fmt.Errorf("list models: %w", err)
	}
	out := make([]Model, len(models))
	for i, m := range models {
		vs := slices.Clone(m.Versions)
		// Decimal versions: shorter is smaller, then by digits.
		slices.SortFunc(vs, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b)) })
		out[i] = Model{Name: m.Name, Versions: vs, Ready: m.Ready && len(vs) > 0}
	}
	slices.SortFunc(out, func(a, b Model) int { return cmp.Compare(a.Name, b.Name) })
	c.describe(tctx, out, refresh)
	return state{models: out, ready: c.cfg.Ready()}, nil
}

// describe fills the ready models' Info from the cache, asking Config.Info
// for those that are new, whose versions changed, or all when refresh.
func (c *client) describe(ctx context.Context, models []Model, refresh bool) {
	if c.cfg.Info == nil {
		return
	}
	next := make(map[string]cachedInfo, len(models))
	for i := range models {
		m := &models[i]
		if !m.Ready {
			continue
		}
		if ci, ok := c.infos[m.Name]; ok && !refresh && slices.Equal(ci.versions, m.Versions) {
			m.Info = ci.info
			next[m.Name] = ci
			continue
		}
		info, err := c.cfg.Info(ctx, m.Name)
		if err != nil {
			// Unloaded meanwhile, usually: the next change asks again.
			c.log.Debug("describing a model for the catalogue failed", "model", m.Name, "error", err)
		}
		m.Info = info
		next[m.Name] = cachedInfo{versions: m.Versions, info: info}
	}
	c.infos = next
	if boundInfos(models, maxInfoBytes) && !c.warnedBound {
		c.warnedBound = true
		c.log.Warn("model descriptions over the registration's bound; some models' config (then description) left out of the catalogue", "models", len(models), "bound_bytes", maxInfoBytes)
	}
}

func (c *client) register(ctx context.Context) error {
	cur, err := c.current(ctx, true)
	if err != nil {
		if !c.sentOnce {
			c.log.Warn("cannot register: listing models failed", "error", err)
			return err
		}
		c.log.Warn("listing models failed; registering with the models last sent", "error", err)
		cur = c.sent
	}
	timeout := c.cfg.RPCTimeout
	if c.rpcTimeout > 0 {
		timeout = c.rpcTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.rpc.Register(tctx, &registryv1.RegisterRequest{
		WorkerId: c.cfg.WorkerID,
		Address:  c.cfg.Address,
		GrpcPort: uint32(c.cfg.GRPCPort),
		HttpPort: uint32(c.cfg.HTTPPort),
		Models:   cur.proto(),
		Ready:    cur.ready,
		Pool:     c.cfg.Pool,
	})
	if err != nil {
		level := slog.LevelWarn
		switch status.Code(err) {
		case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted:
			level = slog.LevelError // needs an operator; retried anyway in case it gets fixed
		}
		c.log.Log(ctx, level, "registration with helix-xds failed", "error", err)
		return err
	}
	ttl := resp.GetLeaseTtl().AsDuration()
	if ttl <= 0 {
		ttl = fallbackTTL
	}
	c.interval = c.cfg.Interval
	if c.interval == 0 {
		c.interval = ttl / 3
	}
	if c.interval > ttl/2 {
		c.log.Warn("renewal interval too long for the lease; using a third of the TTL", "interval", c.interval, "lease_ttl", ttl)
		c.interval = ttl / 3
	}
	c.rpcTimeout = min(c.cfg.RPCTimeout, c.interval)
	c.lease, c.sent, c.sentOnce = resp.GetLeaseId(), cur, true
	c.log.Info("registered with helix-xds", "address", c.cfg.Address, "grpc_port", c.cfg.GRPCPort,
		"ready", cur.ready, "models", len(cur.models), "lease_ttl", ttl, "renew_every", c.interval)
	return nil
}

func (c *client) renew(ctx context.Context, cur state) error {
	tctx, cancel := context.WithTimeout(ctx, c.rpcTimeout)
	defer cancel()
	_, err := c.rpc.Renew(tctx, &registryv1.RenewRequest{LeaseId: c.lease, Models: cur.proto(), Ready: cur.ready})
	if err != nil {
		return err
	}
	if !cur.equal(c.sent) {
		c.log.Info("published a change to helix-xds", "ready", cur.ready, "models", len(cur.models))
	}
	c.sent = cur
	return nil
}

// deregister runs after ctx ended, so it gets a fresh bounded context.
func (c *client) deregister(ctx context.Context) {
	if c.lease == "" {
		return
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.DeregisterTimeout)
	defer cancel()
	if _, err := c.rpc.Deregister(tctx, &registryv1.DeregisterRequest{LeaseId: c.lease}); err != nil {
		c.log.Warn("deregistration failed; the lease will lapse instead", "error", err)
		return
	}
	c.lease = ""
	c.log.Info("deregistered from helix-xds")
}

// nextBackoff doubles the wait up to MaxBackoff, with jitter so that many
// workers do not retry in step after helix-xds restarts.
func (c *client) nextBackoff() time.Duration {
	if c.backoff == 0 {
		c.backoff = c.cfg.MinBackoff
	} else {
		c.backoff = min(2*c.backoff, c.cfg.MaxBackoff)
	}
	return c.backoff/2 + rand.N(c.backoff/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
