package ir

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/helixflow/helixflow/internal/wire"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid gateway model")

// FieldError says which field is wrong and why.
type FieldError struct {
	Field  string // e.g. "pools[2].endpoints[0].port"
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// maxEndpointsPerPool bounds one pool (a sanity limit, far above any
// deployment: Envoy itself slows down long before).
const maxEndpointsPerPool = 100000

// retryOn lists the retry conditions Envoy knows for HTTP and gRPC.
var retryOn = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true,
	"connect-failure": true, "envoy-ratelimited": true, "retriable-4xx": true,
	"refused-stream": true, "http3-post-connect-failure": true,
	"cancelled": true, "deadline-exceeded": true, "internal": true,
	"resource-exhausted": true, "unavailable": true,
}

// Validate checks g after ApplyDefaults. It returns nil or the joined
// FieldErrors, each wrapping ErrInvalid.
func (g *Gateway) Validate() error {
	v := &validator{}
	g.validateStatic(v)
	v.pool("default_pool", g.DefaultPool, true, g.Workers == nil)
	seen := make(map[string]int, len(g.Pools))
	for i, p := range g.Pools {
		f := "pools[" + strconv.Itoa(i) + "]"
		if j, dup := seen[p.Model]; dup {
			v.add(f+".model", "duplicate of pools[%d]", j)
		}
		seen[p.Model] = i
		v.pool(f, p, false, g.Workers == nil)
	}
	return v.err()
}

// ValidateStatic checks everything but the pools: what a config file
// decides. xds/config calls it on a config before any worker is known.
func (g *Gateway) ValidateStatic() error {
	v := &validator{}
	g.validateStatic(v)
	return v.err()
}

func (g *Gateway) validateStatic(v *validator) {
	l := g.Listener
	v.port("listener.port", l.Port, false)
	if a, err := netip.ParseAddr(l.Address); err != nil {
		v.add("listener.address", "must be an IP address, got %q", l.Address)
	} else if l.TLS == nil && !a.IsLoopback() {
		v.add("listener.tls", "required unless the listener is on loopback")
	}
	if l.TLS != nil {
		v.file("listener.tls.cert_file", l.TLS.CertFile)
		v.file("listener.tls.key_file", l.TLS.KeyFile)
		v.optionalDir("listener.tls.watch_dir", l.TLS.WatchDir)
	}
	if len(l.ALPN) == 0 {
		v.add("listener.alpn", "must not be empty")
	}
	for i, p := range l.ALPN {
		if p != "h2" && p != "http/1.1" {
			v.add(fmt.Sprintf("listener.alpn[%d]", i), "must be h2 or http/1.1, got %q", p)
		}
	}

	v.upstream("authz.upstream", g.AuthZ.Upstream)
	if p := g.AuthZ.Public; p != nil {
		v.publicUpstream("authz.public", *p)
	}
	v.duration("authz.timeout", g.AuthZ.Timeout, time.Millisecond, time.Minute)
	if b := g.AuthZ.MaxRequestBytes; b < 16 || b > 64<<10 {
		v.add("authz.max_request_bytes", "must be 16..65536, got %d", b)
	}
	if b := g.AuthZ.RESTBodyBytes; b < 16 || b > 64<<10 {
		v.add("authz.rest_body_bytes", "must be 16..65536, got %d", b)
	}

	if rl := g.RateLimit; rl != nil {
		if !isLabel(rl.Domain) {
			v.add("ratelimit.domain", "must be letters, digits, '-', '_' or '.', got %q", rl.Domain)
		}
		v.duration("ratelimit.timeout", rl.Timeout, time.Millisecond, time.Minute)
		v.plans(rl.Plans, &rl.DefaultPlan)
	}
	if g.Workers != nil {
		v.upstreamTLS("workers_tls", g.Workers)
	}

	t := g.Timeouts
	v.duration("timeouts.request", t.Request, time.Millisecond, 24*time.Hour)
	if t.Stream != 0 {
		v.duration("timeouts.stream", t.Stream, time.Millisecond, 7*24*time.Hour)
	}
	v.duration("timeouts.idle", t.Idle, time.Millisecond, 7*24*time.Hour)
	v.duration("timeouts.connect", t.Connect, time.Millisecond, time.Minute)

	r := g.Retry
	if len(r.On) == 0 {
		v.add("retry.on", "must not be empty")
	}
	for i, c := range r.On {
		if !retryOn[c] {
			v.add(fmt.Sprintf("retry.on[%d]", i), "unknown retry condition %q", c)
		}
	}
	if r.NumRetries > 10 {
		v.add("retry.num_retries", "must be at most 10, got %d", r.NumRetries)
	}
	if r.PerTryTimeout < 0 || r.PerTryTimeout > t.Request {
		v.add("retry.per_try_timeout", "must be 0..timeouts.request (%s), got %s", t.Request, r.PerTryTimeout)
	}
	if math.IsNaN(r.BudgetPercent) || r.BudgetPercent <= 0 || r.BudgetPercent > 100 {
		v.add("retry.budget_percent", "must be in (0, 100], got %v", r.BudgetPercent)
	}

	h := g.HealthCheck
	v.duration("health_check.interval", h.Interval, 100*time.Millisecond, time.Hour)
	v.duration("health_check.timeout", h.Timeout, time.Millisecond, time.Minute)
	v.duration("health_check.no_traffic_interval", h.NoTrafficInterval, 100*time.Millisecond, time.Hour)
	if h.UnhealthyThreshold == 0 || h.UnhealthyThreshold > 100 {
		v.add("health_check.unhealthy_threshold", "must be 1..100, got %d", h.UnhealthyThreshold)
	}
	if h.HealthyThreshold == 0 || h.HealthyThreshold > 100 {
		v.add("health_check.healthy_threshold", "must be 1..100, got %d", h.HealthyThreshold)
	}

	if c := g.CORS; c != nil {
		v.cors(c)
	}
	if sl := g.SourceLimit; sl != nil {
		if sl.RequestsPerSecond == 0 || sl.RequestsPerSecond > 1_000_000 {
			v.add("source_limit.requests_per_second", "must be 1..1000000, got %d", sl.RequestsPerSecond)
		}
		if sl.Burst < sl.RequestsPerSecond || sl.Burst > 2_000_000 {
			v.add("source_limit.burst", "must be requests_per_second (%d)..2000000, got %d", sl.RequestsPerSecond, sl.Burst)
		}
		if sl.MaxSources == 0 || sl.MaxSources > 1_000_000 {
			v.add("source_limit.max_sources", "must be 1..1000000, got %d", sl.MaxSources)
		}
	}
	if tr := g.Tracing; tr != nil {
		v.tracing(tr)
	}
}

// tracing checks the tracer: a collector reached with TLS (server
// checked) unless it is on loopback, a sampling share and a service name.
func (v *validator) tracing(tr *Tracing) {
	const f = "tracing.collector"
	loopback := v.endpoint(f, tr.Collector.Address, tr.Collector.Port)
	if len(tr.Collector.Replicas) > 0 {
		v.add(f+".replicas", "not supported: one collector address (put a load balancer or a collector in front)")
	}
	if t := tr.Collector.TLS; t != nil {
		v.file(f+".tls.ca_file", t.CAFile)
		switch {
		case t.CertFile == "" && t.KeyFile == "":
		case t.CertFile == "":
			v.add(f+".tls.cert_file", "required with key_file")
		case t.KeyFile == "":
			v.add(f+".tls.key_file", "required with cert_file")
		default:
			v.file(f+".tls.cert_file", t.CertFile)
			v.file(f+".tls.key_file", t.KeyFile)
		}
		switch {
		case t.ServerName == "":
			v.add(f+".tls.server_name", "required with TLS: the DNS name Envoy sends as SNI and requires in the collector's certificate")
		case !isHostname(t.ServerName):
			v.add(f+".tls.server_name", "must be a DNS name, got %q", t.ServerName)
		}
		v.optionalDir(f+".tls.watch_dir", t.WatchDir)
	} else if !loopback {
		// Spans carry paths, model names and client ids.
		v.add(f+".tls", "required unless the collector is on loopback")
	}
	if s := tr.Sampling; math.IsNaN(s) || s < 0 || s > 1 {
		v.add("tracing.sampling", "must be 0..1, got %v", s)
	}
	switch n := tr.ServiceName; {
	case n == "":
		v.add("tracing.service_name", "required")
	case len(n) > 128 || strings.IndexFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		v.add("tracing.service_name", "must be at most 128 printable characters, got %q", n)
	}
}

// ValidatePlans checks rate-limit plans on their own, as a config file may
// hold them before a ratelimit section enforces them (Validate checks the
// plans of g.RateLimit). Fields are named as in Validate.
func ValidatePlans(plans []Plan) error {
	v := &validator{}
	v.plans(plans, nil)
	return v.err()
}

// plans checks plans and, unless defaultPlan is nil (plans not enforced
// yet), that the default plan is one of them.
func (v *validator) plans(plans []Plan, defaultPlan *string) {
	names := make(map[string]bool, len(plans))
	for i, p := range plans {
		f := fmt.Sprintf("ratelimit.plans[%d]", i)
		if !isLabel(p.Name) {
			v.add(f+".name", "must be letters, digits, '-', '_' or '.' (at most 64), got %q", p.Name)
		}
		if names[p.Name] {
			v.add(f+".name", "duplicate plan %q", p.Name)
		}
		names[p.Name] = true
		if p.RequestsPerSecond == 0 && p.RequestsPerMinute == 0 {
			v.add(f, "needs requests_per_second or requests_per_minute")
		}
	}
	if defaultPlan == nil {
		return
	}
	// Required: without it, clients with no plan or one not listed (a plan
	// removed since) would not be limited at all.
	known := strings.Join(slices.Sorted(maps.Keys(names)), ", ")
	switch {
	case *defaultPlan == "" && known == "":
		v.add("ratelimit.default_plan", "required: the plan of clients with none or one not listed; define it under plans")
	case *defaultPlan == "":
		v.add("ratelimit.default_plan", "required: the plan of clients with none or one not listed (one of %s)", known)
	case !names[*defaultPlan]:
		v.add("ratelimit.default_plan", "no plan named %q (plans: %s)", *defaultPlan, cmp.Or(known, "none"))
	}
}

type validator struct {
	errs []error
	// addrs caches parsed endpoint addresses: a worker is in many pools.
	addrs map[string]addrInfo
}

type addrInfo struct{ ok, loopback bool }

func (v *validator) endpointAddr(s string) addrInfo {
	if i, ok := v.addrs[s]; ok {
		return i
	}
	a, err := netip.ParseAddr(s)
	i := addrInfo{ok: err == nil && a.Zone() == "", loopback: err == nil && a.IsLoopback()}
	if v.addrs == nil {
		v.addrs = make(map[string]addrInfo)
	}
	v.addrs[s] = i
	return i
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func (v *validator) port(field string, p uint32, zeroOK bool) {
	if (p == 0 && !zeroOK) || p > 65535 {
		v.add(field, "must be 1..65535, got %d", p)
	}
}

func (v *validator) duration(field string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.add(field, "must be %s..%s, got %s", lo, hi, d)
	}
}

// file checks a path Envoy will open: absolute, so that it does not depend
// on Envoy's working directory.
func (v *validator) file(field, path string) {
	switch {
	case path == "":
		v.add(field, "required")
	case !filepath.IsAbs(path):
		v.add(field, "must be an absolute path, got %q", path)
	case strings.ContainsAny(path, "\x00\n"):
		v.add(field, "must not contain NUL or newline")
	}
}

func (v *validator) optionalDir(field, path string) {
	if path != "" {
		v.file(field, path)
	}
}

func (v *validator) upstreamTLS(field string, t *UpstreamTLS) {
	v.file(field+".ca_file", t.CAFile)
	v.file(field+".cert_file", t.CertFile)
	v.file(field+".key_file", t.KeyFile)
	switch {
	case t.ServerName == "":
		// Without it Envoy would take any certificate the CA signed (a
		// worker's, another service's) as the service's.
		v.add(field+".server_name", "required with TLS: the DNS name Envoy sends as SNI and requires in the service's certificate")
	case !isHostname(t.ServerName):
		v.add(field+".server_name", "must be a DNS name, got %q", t.ServerName)
	}
	v.optionalDir(field+".watch_dir", t.WatchDir)
}

func (v *validator) upstream(field string, u Upstream) {
	loopback := v.endpoint(field, u.Address, u.Port)
	for i, r := range u.Replicas {
		loopback = v.endpoint(fmt.Sprintf("%s.replicas[%d]", field, i), r.Address, r.Port) && loopback
	}
	if u.TLS != nil {
		v.upstreamTLS(field+".tls", u.TLS)
		return
	}
	if !loopback {
		v.add(field+".tls", "required unless the address is loopback")
	}
}

// publicUpstream checks helix-authz's public port: as upstream, but the
// client certificate is optional (the port serves browsers and asks for
// none); the CA and the server name are not.
func (v *validator) publicUpstream(field string, u Upstream) {
	loopback := v.endpoint(field, u.Address, u.Port)
	for i, r := range u.Replicas {
		loopback = v.endpoint(fmt.Sprintf("%s.replicas[%d]", field, i), r.Address, r.Port) && loopback
	}
	t := u.TLS
	if t == nil {
		if !loopback {
			v.add(field+".tls", "required unless the address is loopback")
		}
		return
	}
	f := field + ".tls"
	v.file(f+".ca_file", t.CAFile)
	switch {
	case t.CertFile == "" && t.KeyFile == "":
	case t.CertFile == "":
		v.add(f+".cert_file", "required with key_file")
	case t.KeyFile == "":
		v.add(f+".key_file", "required with cert_file")
	default:
		v.file(f+".cert_file", t.CertFile)
		v.file(f+".key_file", t.KeyFile)
	}
	switch {
	case t.ServerName == "":
		v.add(f+".server_name", "required with TLS: the DNS name Envoy sends as SNI and requires in helix-authz's certificate")
	case !isHostname(t.ServerName):
		v.add(f+".server_name", "must be a DNS name, got %q", t.ServerName)
	}
	v.optionalDir(f+".watch_dir", t.WatchDir)
}

// endpoint checks one address of an upstream and reports whether it is
// loopback.
func (v *validator) endpoint(field, addr string, port uint32) (loopback bool) {
	v.port(field+".port", port, false)
	a, ipErr := netip.ParseAddr(addr)
	switch {
	case addr == "":
		v.add(field+".address", "required")
	case ipErr != nil && !isHostname(addr):
		v.add(field+".address", "must be an IP address or a DNS name, got %q", addr)
	}
	return (ipErr == nil && a.IsLoopback()) || addr == "localhost"
}

func (v *validator) cors(c *CORS) {
	if len(c.AllowOrigins) == 0 {
		v.add("cors.allow_origins", "must not be empty")
	}
	for i, o := range c.AllowOrigins {
		f := fmt.Sprintf("cors.allow_origins[%d]", i)
		if o == "*" {
			if c.AllowCredentials {
				v.add(f, `"*" cannot be combined with allow_credentials`)
			}
			continue
		}
		if !validOrigin(o) {
			v.add(f, "must be scheme://host[:port] or \"*\", got %q", o)
		}
	}
	for _, l := range []struct {
		name string
		vals []string
	}{{"allow_methods", c.AllowMethods}, {"allow_headers", c.AllowHeaders}, {"expose_headers", c.ExposeHeaders}} {
		for i, s := range l.vals {
			if !isToken(s) {
				v.add(fmt.Sprintf("cors.%s[%d]", l.name, i), "must be an HTTP token, got %q", s)
			}
		}
	}
	if c.MaxAge < 0 || c.MaxAge > 24*time.Hour {
		v.add("cors.max_age", "must be 0..24h, got %s", c.MaxAge)
	}
}

func (v *validator) pool(field string, p Pool, isDefault, plaintext bool) {
	if isDefault {
		if p.Model != "" {
			v.add(field+".model", "must be empty for the default pool")
		}
		if p.Sequence {
			v.add(field+".sequence", "must be false for the default pool (it serves no model's sequences)")
		}
		if p.Traffic != nil {
			v.add(field+".traffic", "must be nil for the default pool (it serves no model)")
		}
	} else if err := wire.CheckModelName(p.Model); err != nil {
		v.add(field+".model", "%q: %v", p.Model, err)
	}
	if len(p.Endpoints) > maxEndpointsPerPool {
		v.add(field+".endpoints", "more than %d endpoints", maxEndpointsPerPool)
		return
	}
	// Duplicates: adjacent when the pool is sorted (translation sorts
	// first), else found with a map.
	sorted := slices.IsSortedFunc(p.Endpoints, CompareEndpoints)
	type key struct {
		addr string
		port uint32
	}
	var seen map[key]int
	if !sorted {
		seen = make(map[key]int, len(p.Endpoints))
	}
	for i, e := range p.Endpoints {
		// The field name is formatted only on error: pools can hold 100k
		// endpoints and Validate runs before every translation.
		f := func(s string) string { return fmt.Sprintf("%s.endpoints[%d]%s", field, i, s) }
		a := v.endpointAddr(e.Address)
		if !a.ok {
			v.add(f(".address"), "must be an IP address, got %q", e.Address)
		} else if plaintext && !a.loopback {
			v.add(f(".address"), "workers_tls is required for a non-loopback worker (%s)", e.Address)
		}
		if e.Port == 0 || e.Port > 65535 {
			v.port(f(".port"), e.Port, false)
		}
		if e.HTTPPort > 65535 {
			v.port(f(".http_port"), e.HTTPPort, true)
		}
		if sorted {
			if i > 0 && p.Endpoints[i-1].Address == e.Address && p.Endpoints[i-1].Port == e.Port {
				v.add(f(""), "duplicate of endpoints[%d]", i-1)
			}
		} else {
			k := key{e.Address, e.Port}
			if j, dup := seen[k]; dup {
				v.add(f(""), "duplicate of endpoints[%d]", j)
			}
			seen[k] = i
		}
		for j, ver := range e.Versions {
			if err := wire.CheckVersion(ver); err != nil {
				v.add(f(fmt.Sprintf(".versions[%d]", j)), "%q: %v", ver, err)
			}
		}
		if e.Pool != "" {
			if err := wire.CheckPoolName(e.Pool); err != nil {
				v.add(f(".pool"), "%q: %v", e.Pool, err)
			}
		}
	}
	if p.Traffic != nil && !isDefault {
		n := len(v.errs)
		v.traffic(field+".traffic.", p.Traffic)
		if len(v.errs) == n {
			if _, detail := p.TrafficInactive(); detail != "" {
				v.add(field+".traffic", "%s", detail)
			}
		}
	}
}

// isLabel accepts names used as descriptor values and plan names.
func isLabel(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func isHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// isPort accepts a decimal port number.
func isPort(s string) bool {
	_, err := strconv.ParseUint(s, 10, 16)
	return err == nil
}

func validOrigin(o string) bool {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || (scheme != "https" && scheme != "http") || rest == "" {
		return false
	}
	host := rest
	if h, port, ok := strings.Cut(rest, ":"); ok && !strings.HasPrefix(rest, "[") {
		host = h
		if !isPort(port) {
			return false
		}
	}
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return false
		}
		_, err := netip.ParseAddr(host[1:end])
		return err == nil && (end == len(host)-1 || (host[end+1] == ':' && isPort(host[end+2:])))
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return isHostname(host)
}
