package config

import (
	"net/netip"
	"slices"

	"github.com/helixflow/helixflow/xds/ir"
)

// Gateway returns the gateway model this config describes, defaults
// applied, with no pools: the worker sources set Pools and DefaultPool.
// Each call returns a new value the caller may modify.
func (c *Config) Gateway() *ir.Gateway {
	g := &ir.Gateway{
		Listener: ir.Listener{
			Address: c.Listener.Address,
			Port:    c.Listener.Port,
			ALPN:    slices.Clone(c.Listener.ALPN),
		},
		AuthZ: ir.AuthZ{
			Upstream:         upstream(c.AuthZ.Address, c.AuthZ.TLS, c.AuthZ.Replicas...),
			Timeout:          c.AuthZ.Timeout,
			MaxRequestBytes:  c.AuthZ.MaxRequestBytes,
			RESTBodyBytes:    c.AuthZ.RESTBodyBytes,
			FailureModeAllow: c.AuthZ.FailureModeAllow,
		},
		Workers: upstreamTLS(c.WorkersTLS),
		Timeouts: ir.Timeouts{
			Request: c.Timeouts.Request,
			Stream:  c.Timeouts.Stream,
			Idle:    c.Timeouts.Idle,
			Connect: c.Timeouts.Connect,
		},
		Retry: ir.Retry{
			On:                  slices.Clone(c.Retry.On),
			NumRetries:          DefaultNumRetries,
			PerTryTimeout:       c.Retry.PerTryTimeout,
			BudgetPercent:       c.Retry.BudgetPercent,
			MinRetryConcurrency: c.Retry.MinRetryConcurrency,
		},
		HealthCheck: ir.HealthCheck{
			Interval:           c.HealthCheck.Interval,
			Timeout:            c.HealthCheck.Timeout,
			NoTrafficInterval:  c.HealthCheck.NoTrafficInterval,
			UnhealthyThreshold: c.HealthCheck.UnhealthyThreshold,
			HealthyThreshold:   c.HealthCheck.HealthyThreshold,
		},
	}
	if p := c.AuthZ.Public; p != nil {
		u := upstream(p.Address, nil, p.Replicas...)
		if t := p.TLS; t != nil {
			u.TLS = &ir.UpstreamTLS{CAFile: t.CAFile, ServerName: t.ServerName, WatchDir: t.WatchDir}
		}
		g.AuthZ.Public = &u
	}
	if t := c.Listener.TLS; t != nil {
		g.Listener.TLS = &ir.ListenerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile, WatchDir: t.WatchDir}
	}
	if c.Retry.NumRetries != nil {
		g.Retry.NumRetries = *c.Retry.NumRetries
	}
	if rl := c.RateLimit; rl != nil {
		g.RateLimit = &ir.RateLimit{
			Domain:          rl.Domain,
			Timeout:         rl.Timeout,
			FailureModeDeny: rl.FailureMode == FailClosed,
			DefaultPlan:     rl.DefaultPlan,
		}
		g.RateLimit.Plans = c.PlanList()
	}
	if cors := c.CORS; cors != nil {
		g.CORS = &ir.CORS{
			AllowOrigins:     slices.Clone(cors.AllowOrigins),
			AllowMethods:     slices.Clone(cors.AllowMethods),
			AllowHeaders:     slices.Clone(cors.AllowHeaders),
			ExposeHeaders:    slices.Clone(cors.ExposeHeaders),
			MaxAge:           cors.MaxAge,
			AllowCredentials: cors.AllowCredentials,
		}
	}
	if sl := c.SourceLimit; !sl.Disabled {
		g.SourceLimit = &ir.SourceLimit{RequestsPerSecond: sl.RequestsPerSecond, Burst: sl.Burst, MaxSources: sl.MaxSources}
	}
	if t := c.Tracing; t != nil {
		g.Tracing = tracing(t)
	}
	g.ApplyDefaults()
	return g
}

// tracing is the tracer's model: the default sampling where the file has
// none, and TLS when a CA is named, its server name defaulting to the
// collector's host name (an IP address needs server_name).
func tracing(t *Tracing) *ir.Tracing {
	tr := &ir.Tracing{Collector: upstream(t.Collector, nil), Sampling: ir.DefaultTracingSampling, ServiceName: t.ServiceName}
	if t.Sampling != nil {
		tr.Sampling = *t.Sampling
	}
	if t.CAFile != "" {
		name := t.ServerName
		if _, err := netip.ParseAddr(tr.Collector.Address); name == "" && err != nil {
			name = tr.Collector.Address
		}
		tr.Collector.TLS = &ir.UpstreamTLS{CAFile: t.CAFile, ServerName: name}
	}
	return tr
}

// PlanList returns the plans sorted by name.
func (c *Config) PlanList() []ir.Plan {
	out := make([]ir.Plan, 0, len(c.Plans))
	for _, name := range c.PlanNames() {
		p := c.Plans[name]
		out = append(out, ir.Plan{Name: name, RequestsPerSecond: p.RequestsPerSecond, RequestsPerMinute: p.RequestsPerMinute})
	}
	return out
}

// DefaultPlan is ratelimit.default_plan: the plan of clients with none or
// one not listed, which validation requires whenever rate limits are on;
// "" when they are off.
func (c *Config) DefaultPlan() string {
	if c.RateLimit == nil {
		return ""
	}
	return c.RateLimit.DefaultPlan
}

// upstream turns "host:port" (and its replicas') into an ir.Upstream; a
// bad address gives a zero one, which validation reports.
func upstream(addr string, t *UpstreamTLS, replicas ...string) ir.Upstream {
	h, p, _ := hostPort(addr)
	u := ir.Upstream{Address: h, Port: p, TLS: upstreamTLS(t)}
	for _, r := range replicas {
		h, p, _ := hostPort(r)
		u.Replicas = append(u.Replicas, ir.Replica{Address: h, Port: p})
	}
	return u
}

func upstreamTLS(t *UpstreamTLS) *ir.UpstreamTLS {
	if t == nil {
		return nil
	}
	return &ir.UpstreamTLS{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName, WatchDir: t.WatchDir}
}
