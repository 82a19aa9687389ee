package ir

import "time"

// Defaults, exported so the config file's documentation and tests agree.
const (
	DefaultAuthZTimeout         = time.Second
	DefaultAuthZMaxRequestBytes = 256
	DefaultAuthZRESTBodyBytes   = 4096
	DefaultRateLimitDomain      = "helixflow"
	DefaultRateLimitTimeout     = 100 * time.Millisecond
	DefaultRequestTimeout       = 60 * time.Second
	DefaultIdleTimeout          = 5 * time.Minute
	DefaultConnectTimeout       = time.Second
	DefaultRetryBudgetPercent   = 20
	DefaultMinRetryConcurrency  = 3
	DefaultHealthInterval       = 2 * time.Second
	DefaultHealthTimeout        = time.Second
	DefaultHealthNoTraffic      = 10 * time.Second
	DefaultUnhealthyThreshold   = 2
	DefaultHealthyThreshold     = 1
	DefaultSourceRate           = 1000
	DefaultSourceMaxSources     = 10000
	DefaultTracingSampling      = 0.01
	DefaultTracingServiceName   = "helix-gateway"
)

// DefaultALPN is offered by the listener: gRPC needs h2.
func DefaultALPN() []string { return []string{"h2", "http/1.1"} }

// DefaultRetryOn retries what is safe for inference: the worker was not
// reached, or said it cannot take the request (gRPC UNAVAILABLE, REST
// 502/503/504 as "gateway-error": starting, stopping, overloaded), so it
// did not run it and another worker may.
func DefaultRetryOn() []string {
	return []string{"unavailable", "gateway-error", "connect-failure", "reset"}
}

// ApplyDefaults fills zero fields with their defaults. Zero stays zero
// where it has a meaning: Timeouts.Stream (no limit), Retry.NumRetries (no
// retries), Retry.PerTryTimeout (the request timeout).
func (g *Gateway) ApplyDefaults() {
	if len(g.Listener.ALPN) == 0 {
		g.Listener.ALPN = DefaultALPN()
	}
	setDur(&g.AuthZ.Timeout, DefaultAuthZTimeout)
	if g.AuthZ.MaxRequestBytes == 0 {
		g.AuthZ.MaxRequestBytes = DefaultAuthZMaxRequestBytes
	}
	if g.AuthZ.RESTBodyBytes == 0 {
		g.AuthZ.RESTBodyBytes = DefaultAuthZRESTBodyBytes
	}
	if rl := g.RateLimit; rl != nil {
		if rl.Domain == "" {
			rl.Domain = DefaultRateLimitDomain
		}
		setDur(&rl.Timeout, DefaultRateLimitTimeout)
	}
	if sl := g.SourceLimit; sl != nil {
		if sl.RequestsPerSecond == 0 {
			sl.RequestsPerSecond = DefaultSourceRate
		}
		if sl.Burst == 0 {
			sl.Burst = 2 * sl.RequestsPerSecond
		}
		if sl.MaxSources == 0 {
			sl.MaxSources = DefaultSourceMaxSources
		}
	}
	if tr := g.Tracing; tr != nil && tr.ServiceName == "" {
		tr.ServiceName = DefaultTracingServiceName
	}
	setDur(&g.Timeouts.Request, DefaultRequestTimeout)
	setDur(&g.Timeouts.Idle, DefaultIdleTimeout)
	setDur(&g.Timeouts.Connect, DefaultConnectTimeout)
	if len(g.Retry.On) == 0 {
		g.Retry.On = DefaultRetryOn()
	}
	if g.Retry.BudgetPercent == 0 {
		g.Retry.BudgetPercent = DefaultRetryBudgetPercent
	}
	if g.Retry.MinRetryConcurrency == 0 {
		g.Retry.MinRetryConcurrency = DefaultMinRetryConcurrency
	}
	hc := &g.HealthCheck
	setDur(&hc.Interval, DefaultHealthInterval)
	setDur(&hc.Timeout, DefaultHealthTimeout)
	setDur(&hc.NoTrafficInterval, DefaultHealthNoTraffic)
	if hc.UnhealthyThreshold == 0 {
		hc.UnhealthyThreshold = DefaultUnhealthyThreshold
	}
	if hc.HealthyThreshold == 0 {
		hc.HealthyThreshold = DefaultHealthyThreshold
	}
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}
