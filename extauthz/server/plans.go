package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/xds/config"
)

// loadGateway reads the gateway config file: the one home of the plans,
// which helix-xds reads too. The admin API gives clients only its plans,
// and Check counts requests against their limits.
func loadGateway(path string) (*config.Config, error) {
	if path == "" {
		return nil, errors.New("the gateway config file (--gateway-config) is required: it holds the plans and their limits")
	}
	return config.Load(path)
}

// newLimiter is the plan limiter of the gateway config's ratelimit
// section over Redis; nil when the config has none (no plan limits).
func newLimiter(gw *config.Config, cfg Config) (*ratelimit.Limiter, *ratelimit.Redis, error) {
	rl := gw.Gateway().RateLimit
	if rl == nil {
		return nil, nil, nil
	}
	if cfg.Redis.Address == "" {
		return nil, nil, errors.New("the gateway config has plans (a ratelimit section): the Redis that holds their counters (--redis-address) is required")
	}
	opts := cfg.Redis
	opts.Logger = cfg.Logger
	redis := ratelimit.NewRedis(opts)
	lim, err := ratelimit.New(redis, rl, ratelimit.Options{Logger: cfg.Logger, Metrics: cfg.Registerer})
	if err != nil {
		redis.Close()
		return nil, nil, fmt.Errorf("rate limits: %w", err)
	}
	return lim, redis, nil
}

// watchGateway follows the gateway config file as helix-xds does: a new
// good file replaces the plans and their limits, a bad one is logged and
// the last good ones stay.
func (s *Server) watchGateway(ctx context.Context) {
	_ = config.Watch(ctx, s.gatewayFile, func(c *config.Config) {
		if s.plans != nil {
			s.plans.Set(c.PlanNames(), c.DefaultPlan())
		}
		if s.portalPlans != nil {
			s.portalPlans.set(c)
		}
		if s.limiter != nil {
			if err := s.limiter.SetPlans(c.Gateway().RateLimit); err != nil {
				s.log.Warn("gateway config without rate limits refused; the last good limits stay (restart helix-authz to turn them off)", "error", err)
				return
			}
		}
		s.log.Info("gateway plans loaded", "plans", c.PlanNames(), "default_plan", c.DefaultPlan())
	}, func(err error) {
		s.log.Warn("gateway config refused; the last good plans stay", "error", err)
	})
}
