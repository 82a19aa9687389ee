package ir

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/wire"
)

func validGateway() *Gateway {
	g := &Gateway{
		Listener: Listener{Address: "127.0.0.1", Port: 8443},
		AuthZ:    AuthZ{Upstream: Upstream{Address: "127.0.0.1", Port: 9001}},
		Pools: []Pool{{Model: "simple", Endpoints: []Endpoint{
			{Address: "127.0.0.1", Port: 8001, HTTPPort: 8000, Ready: true, Versions: []string{"1"}, Worker: "w1"},
		}}},
		DefaultPool: Pool{Endpoints: []Endpoint{{Address: "127.0.0.1", Port: 8001, HTTPPort: 8000, Ready: true, Worker: "w1"}}},
	}
	g.ApplyDefaults()
	return g
}

func tlsFiles() *UpstreamTLS {
	return &UpstreamTLS{CAFile: "/pki/ca.crt", CertFile: "/pki/c.crt", KeyFile: "/pki/c.key", ServerName: "helix-worker"}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Gateway)
	}{
		{"minimal", func(*Gateway) {}},
		{"tls everywhere, remote workers", func(g *Gateway) {
			g.Listener = Listener{Address: "0.0.0.0", Port: 443, ALPN: DefaultALPN(), TLS: &ListenerTLS{CertFile: "/pki/s.crt", KeyFile: "/pki/s.key"}}
			g.AuthZ.Upstream = Upstream{Address: "helix-authz.helix.svc", Port: 9001, TLS: tlsFiles()}
			g.Workers = tlsFiles()
			g.Pools[0].Endpoints[0].Address = "10.0.0.4"
			g.DefaultPool.Endpoints[0].Address = "fd00::4"
		}},
		{"ratelimit and cors", func(g *Gateway) {
			g.RateLimit = &RateLimit{Plans: []Plan{{Name: "free", RequestsPerSecond: 5}}, DefaultPlan: "free"}
			g.CORS = &CORS{AllowOrigins: []string{"*", "https://a.example:8443", "http://[::1]:3000"}, AllowMethods: []string{"GET"}}
			g.ApplyDefaults()
		}},
		{"no pools, empty default pool", func(g *Gateway) { g.Pools = nil; g.DefaultPool = Pool{} }},
		{"worker without REST", func(g *Gateway) { g.Pools[0].Endpoints[0].HTTPPort = 0 }},
		{"unicode model", func(g *Gateway) { g.Pools[0].Model = "résnet-50_v1.2" }},
		{"stream timeout", func(g *Gateway) { g.Timeouts.Stream = time.Hour }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := validGateway()
			tc.edit(g)
			if err := g.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		edit  func(*Gateway)
		field string
	}{
		{func(g *Gateway) { g.Listener.Port = 0 }, "listener.port"},
		{func(g *Gateway) { g.Listener.Port = 70000 }, "listener.port"},
		{func(g *Gateway) { g.Listener.Address = "example.com" }, "listener.address"},
		{func(g *Gateway) { g.Listener.Address = "0.0.0.0" }, "listener.tls"},
		{func(g *Gateway) { g.Listener.TLS = &ListenerTLS{CertFile: "rel.crt", KeyFile: "/k"} }, "listener.tls.cert_file"},
		{func(g *Gateway) { g.Listener.TLS = &ListenerTLS{CertFile: "/c"} }, "listener.tls.key_file"},
		{func(g *Gateway) { g.Listener.ALPN = []string{"h3"} }, "listener.alpn[0]"},
		{func(g *Gateway) { g.AuthZ.Upstream.Address = "" }, "authz.upstream.address"},
		{func(g *Gateway) { g.AuthZ.Upstream.Address = "bad_host!" }, "authz.upstream.address"},
		{func(g *Gateway) { g.AuthZ.Upstream.Address = "10.0.0.1" }, "authz.upstream.tls"},
		{func(g *Gateway) { g.AuthZ.Upstream.TLS = &UpstreamTLS{CAFile: "/ca"} }, "authz.upstream.tls.cert_file"},
		{func(g *Gateway) { g.AuthZ.Timeout = 2 * time.Hour }, "authz.timeout"},
		{func(g *Gateway) { g.AuthZ.MaxRequestBytes = 8 }, "authz.max_request_bytes"},
		{func(g *Gateway) { g.AuthZ.RESTBodyBytes = 1 << 20 }, "authz.rest_body_bytes"},
		{func(g *Gateway) {
			g.RateLimit = &RateLimit{Domain: "helix", Timeout: time.Second,
				Plans: []Plan{{Name: "a", RequestsPerSecond: 1}, {Name: "a", RequestsPerMinute: 1}}}
		}, "ratelimit.plans[1].name"},
		{func(g *Gateway) {
			g.RateLimit = &RateLimit{Domain: "helix", Timeout: time.Second, Plans: []Plan{{Name: "a"}}}
		}, "ratelimit.plans[0]"},
		{func(g *Gateway) {
			g.RateLimit = &RateLimit{Domain: "a b", Timeout: time.Second}
		}, "ratelimit.domain"},
		// Without a default plan, a client with no plan or an unlisted one
		// would not be limited at all.
		{func(g *Gateway) {
			g.RateLimit = &RateLimit{Domain: "helix", Timeout: time.Second,
				Plans: []Plan{{Name: "free", RequestsPerSecond: 1}}}
		}, "ratelimit.default_plan"},
		{func(g *Gateway) {
			g.RateLimit = &RateLimit{Domain: "helix", Timeout: time.Second,
				Plans: []Plan{{Name: "free", RequestsPerSecond: 1}}, DefaultPlan: "default"}
		}, "ratelimit.default_plan"},
		{func(g *Gateway) {
			g.Workers = &UpstreamTLS{CAFile: "/ca", CertFile: "/c", KeyFile: "/k", ServerName: "a..b"}
		}, "workers_tls.server_name"},
		// Without a server name Envoy would take any certificate the CA
		// signed (another worker's, another service's) as the service's.
		{func(g *Gateway) { g.Workers = &UpstreamTLS{CAFile: "/ca", CertFile: "/c", KeyFile: "/k"} }, "workers_tls.server_name"},
		{func(g *Gateway) {
			g.AuthZ.Upstream = Upstream{Address: "10.0.0.1", Port: 9001, TLS: &UpstreamTLS{CAFile: "/ca", CertFile: "/c", KeyFile: "/k"}}
		}, "authz.upstream.tls.server_name"},
		{func(g *Gateway) { g.Timeouts.Request = -time.Second }, "timeouts.request"},
		{func(g *Gateway) { g.Timeouts.Stream = -time.Second }, "timeouts.stream"},
		{func(g *Gateway) { g.Retry.On = []string{"unavailable", "sometimes"} }, "retry.on[1]"},
		{func(g *Gateway) { g.Retry.NumRetries = 11 }, "retry.num_retries"},
		{func(g *Gateway) { g.Retry.PerTryTimeout = 2 * g.Timeouts.Request }, "retry.per_try_timeout"},
		{func(g *Gateway) { g.Retry.BudgetPercent = math.NaN() }, "retry.budget_percent"},
		{func(g *Gateway) { g.Retry.BudgetPercent = 101 }, "retry.budget_percent"},
		{func(g *Gateway) { g.HealthCheck.Interval = time.Millisecond }, "health_check.interval"},
		{func(g *Gateway) { g.CORS = &CORS{} }, "cors.allow_origins"},
		{func(g *Gateway) { g.CORS = &CORS{AllowOrigins: []string{"*"}, AllowCredentials: true} }, "cors.allow_origins[0]"},
		{func(g *Gateway) { g.CORS = &CORS{AllowOrigins: []string{"ftp://x"}} }, "cors.allow_origins[0]"},
		{func(g *Gateway) { g.CORS = &CORS{AllowOrigins: []string{"https://x"}, AllowHeaders: []string{"a b"}} }, "cors.allow_headers[0]"},
		{func(g *Gateway) { g.Pools[0].Model = "" }, "pools[0].model"},
		{func(g *Gateway) { g.Pools[0].Model = "a/b" }, "pools[0].model"},
		{func(g *Gateway) { g.Pools[0].Model = ".." }, "pools[0].model"},
		{func(g *Gateway) { g.Pools[0].Model = "a b" }, "pools[0].model"},
		{func(g *Gateway) { g.Pools[0].Model = strings.Repeat("m", wire.MaxModelNameBytes+1) }, "pools[0].model"},
		{func(g *Gateway) { g.Pools = append(g.Pools, Pool{Model: "simple"}) }, "pools[1].model"},
		{func(g *Gateway) { g.Pools[0].Endpoints[0].Address = "worker-1" }, "pools[0].endpoints[0].address"},
		{func(g *Gateway) { g.Pools[0].Endpoints[0].Address = "fe80::1%eth0" }, "pools[0].endpoints[0].address"},
		{func(g *Gateway) { g.Pools[0].Endpoints[0].Address = "10.0.0.1" }, "pools[0].endpoints[0].address"},
		{func(g *Gateway) { g.Pools[0].Endpoints[0].Port = 0 }, "pools[0].endpoints[0].port"},
		{func(g *Gateway) { g.Pools[0].Endpoints[0].HTTPPort = 65536 }, "pools[0].endpoints[0].http_port"},
		{func(g *Gateway) { g.Pools[0].Endpoints[0].Versions = []string{"v1"} }, "pools[0].endpoints[0].versions[0]"},
		{func(g *Gateway) {
			g.Pools[0].Endpoints = append(g.Pools[0].Endpoints, Endpoint{Address: "127.0.0.1", Port: 8001, Worker: "w2"})
		}, "pools[0].endpoints[1]"},
		{func(g *Gateway) {
			// Unsorted duplicates are found too.
			e := g.Pools[0].Endpoints[0]
			g.Pools[0].Endpoints = []Endpoint{e, {Address: "127.0.0.0", Port: 1}, e}
		}, "pools[0].endpoints[2]"},
		{func(g *Gateway) { g.DefaultPool.Model = "simple" }, "default_pool.model"},
		{func(g *Gateway) { g.DefaultPool.Sequence = true }, "default_pool.sequence"},
		{func(g *Gateway) { g.DefaultPool.Endpoints[0].Address = "10.0.0.1" }, "default_pool.endpoints[0].address"},
	}
	for _, tc := range tests {
		t.Run(tc.field, func(t *testing.T) {
			g := validGateway()
			tc.edit(g)
			err := g.Validate()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, not a FieldError", err)
			}
			if !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("err = %v, want it to name %s", err, tc.field)
			}
		})
	}
}

func TestValidateStaticIgnoresPools(t *testing.T) {
	g := validGateway()
	g.Pools[0].Model = "a/b"
	if err := g.ValidateStatic(); err != nil {
		t.Fatalf("ValidateStatic looked at pools: %v", err)
	}
}

func TestValidatePlans(t *testing.T) {
	for _, tc := range []struct {
		plans []Plan
		want  string // "" = valid
	}{
		{[]Plan{{Name: "free", RequestsPerSecond: 5}, {Name: "gold", RequestsPerMinute: 60}}, ""},
		{[]Plan{{Name: "free"}}, "ratelimit.plans[0]: needs requests_per_second or requests_per_minute"},
		{[]Plan{{Name: "a b", RequestsPerSecond: 1}}, `ratelimit.plans[0].name: must be letters`},
		{[]Plan{{Name: "x", RequestsPerSecond: 1}, {Name: "x", RequestsPerSecond: 2}}, `ratelimit.plans[1].name: duplicate plan "x"`},
	} {
		err := ValidatePlans(tc.plans)
		if (tc.want == "") != (err == nil) || err != nil && (!strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid)) {
			t.Errorf("ValidatePlans(%+v) = %v, want %q", tc.plans, err, tc.want)
		}
	}
}

func TestApplyDefaults(t *testing.T) {
	var g Gateway
	g.RateLimit = &RateLimit{}
	g.ApplyDefaults()
	if g.AuthZ.Timeout != time.Second || g.AuthZ.MaxRequestBytes != 256 {
		t.Errorf("authz defaults: %+v", g.AuthZ)
	}
	if g.RateLimit.Domain != "helixflow" || g.RateLimit.Timeout != DefaultRateLimitTimeout {
		t.Errorf("ratelimit defaults: %+v", g.RateLimit)
	}
	if g.Timeouts.Stream != 0 || g.Retry.NumRetries != 0 {
		t.Errorf("zero must stay zero for stream timeout and retries: %+v %+v", g.Timeouts, g.Retry)
	}
	if !slices.Equal(g.Retry.On, []string{"unavailable", "gateway-error", "connect-failure", "reset"}) || !slices.Equal(g.Listener.ALPN, []string{"h2", "http/1.1"}) {
		t.Errorf("list defaults: %v %v", g.Retry.On, g.Listener.ALPN)
	}
	// Set values are kept.
	g2 := Gateway{Timeouts: Timeouts{Request: 3 * time.Second}}
	g2.ApplyDefaults()
	if g2.Timeouts.Request != 3*time.Second {
		t.Errorf("request timeout overwritten: %s", g2.Timeouts.Request)
	}
}

func TestSorted(t *testing.T) {
	e := func(addr string, port uint32, versions ...string) Endpoint {
		return Endpoint{Address: addr, Port: port, Versions: versions}
	}
	g := &Gateway{
		Pools: []Pool{
			{Model: "b", Endpoints: []Endpoint{e("10.0.0.2", 1), e("10.0.0.10", 1), e("10.0.0.1", 2, "3", "1")}},
			{Model: "a", Endpoints: []Endpoint{e("10.0.0.1", 1)}},
		},
		DefaultPool: Pool{Endpoints: []Endpoint{e("10.0.0.2", 1), e("10.0.0.1", 1)}},
	}
	s := g.Sorted()
	if s.Pools[0].Model != "a" || s.Pools[1].Model != "b" {
		t.Fatalf("pools not sorted: %q, %q", s.Pools[0].Model, s.Pools[1].Model)
	}
	var got []string
	for _, ep := range s.Pools[1].Endpoints {
		got = append(got, ep.Address)
	}
	if want := []string{"10.0.0.1", "10.0.0.10", "10.0.0.2"}; !slices.Equal(got, want) {
		t.Errorf("endpoints = %v, want %v (string order)", got, want)
	}
	if v := s.Pools[1].Endpoints[0].Versions; !slices.Equal(v, []string{"1", "3"}) {
		t.Errorf("versions = %v", v)
	}
	if s.DefaultPool.Endpoints[0].Address != "10.0.0.1" {
		t.Errorf("default pool not sorted: %+v", s.DefaultPool.Endpoints)
	}
	// The input is untouched.
	if g.Pools[0].Model != "b" || g.Pools[0].Endpoints[0].Address != "10.0.0.2" ||
		!slices.Equal(g.Pools[0].Endpoints[2].Versions, []string{"3", "1"}) || g.DefaultPool.Endpoints[0].Address != "10.0.0.2" {
		t.Errorf("Sorted modified its input: %+v", g)
	}
	// Sorted input is shared, not copied.
	s2 := s.Sorted()
	if &s2.Pools[0] != &s.Pools[0] || &s2.Pools[1].Endpoints[0] != &s.Pools[1].Endpoints[0] {
		t.Error("sorted input was copied")
	}
}
