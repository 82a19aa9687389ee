package stack

import (
	"fmt"
	"net"
	"strconv"

	"github.com/helixflow/helixflow/internal/freeport"
)

// Ports are the stack's TCP ports, all on 127.0.0.1.
type Ports struct {
	Gateway    int // Envoy's TLS listener (gRPC and REST)
	EnvoyAdmin int
	XDS        int // helix-xds: ADS and the worker registry (mTLS)
	XDSStatus  int // helix-xds: /status, /healthz, /metrics
	Authz      int // helix-authz: OAuth2 (TLS)
	Admin      int // helix-authz: admin API
	ExtAuthz   int // helix-authz: ext_authz (mTLS from Envoy)
	AuthzMetrics,
	Postgres,
	Redis, // helix-authz's rate-limit counters
	Prometheus,
	Alertmanager int
	// MailpitSMTP takes helix-authz's mails; MailpitUI serves mailpit's
	// API (/api/v1/messages) and its web UI's page.
	MailpitSMTP, MailpitUI int
	// JaegerOTLP takes spans (OTLP/gRPC); JaegerUI serves Jaeger's UI and
	// HTTP query API, JaegerGRPC its gRPC query API.
	JaegerOTLP, JaegerUI, JaegerGRPC int

	Workers []WorkerPorts // one per Options.Workers
	// AuthzReplicas are the more helix-authz instances' (Options.AuthzReplicas).
	AuthzReplicas []AuthzPorts
}

// AuthzPorts are one more helix-authz replica's.
type AuthzPorts struct{ Authz, Admin, ExtAuthz, Metrics int }

// WorkerPorts are one helix-worker's.
type WorkerPorts struct{ HTTP, GRPC, Metrics int }

// port is one entry of the table: HELIX_<Name>_PORT forces it.
type port struct {
	name string
	def  int
	p    *int
}

// table lists every port with its name and default (make run's).
func (p *Ports) table() []port {
	t := []port{
		{"GATEWAY", 8443, &p.Gateway}, {"ENVOY_ADMIN", 9901, &p.EnvoyAdmin},
		{"XDS", 18000, &p.XDS}, {"XDS_STATUS", 18001, &p.XDSStatus},
		{"AUTHZ", 8090, &p.Authz}, {"ADMIN", 8091, &p.Admin}, {"EXTAUTHZ", 9001, &p.ExtAuthz},
		{"AUTHZ_METRICS", 9091, &p.AuthzMetrics}, {"PG", 5433, &p.Postgres},
	}
	for i := range p.Workers {
		w := &p.Workers[i]
		n, base := i+1, 8000+10*i // WORKER1 8000-8002, WORKER2 8010-8012, ...
		t = append(t,
			port{fmt.Sprintf("WORKER%d_HTTP", n), base, &w.HTTP},
			port{fmt.Sprintf("WORKER%d_GRPC", n), base + 1, &w.GRPC},
			port{fmt.Sprintf("WORKER%d_METRICS", n), base + 2, &w.Metrics})
	}
	for i := range p.AuthzReplicas {
		a := &p.AuthzReplicas[i]
		n, base := i+2, 8190+100*i // AUTHZ2 8190, ADMIN2 8191, EXTAUTHZ2 9011, AUTHZ2_METRICS 9191, ...
		t = append(t,
			port{fmt.Sprintf("AUTHZ%d", n), base, &a.Authz}, port{fmt.Sprintf("ADMIN%d", n), base + 1, &a.Admin},
			port{fmt.Sprintf("EXTAUTHZ%d", n), 9011 + 10*i, &a.ExtAuthz},
			port{fmt.Sprintf("AUTHZ%d_METRICS", n), base + 1001, &a.Metrics})
	}
	return append(t,
		port{"REDIS", 6380, &p.Redis},
		port{"MAILPIT_SMTP", 1025, &p.MailpitSMTP}, port{"MAILPIT_UI", 8025, &p.MailpitUI},
		port{"PROMETHEUS", 9090, &p.Prometheus}, port{"ALERTMANAGER", 9093, &p.Alertmanager},
		port{"JAEGER_OTLP", 4317, &p.JaegerOTLP}, port{"JAEGER_UI", 16686, &p.JaegerUI},
		port{"JAEGER_GRPC", 16685, &p.JaegerGRPC})
}

// pick fills every port: HELIX_<NAME>_PORT when set, else the default
// when defaults is set and it is free, else a free one (internal/freeport:
// below the ephemeral range). Chosen ports stay bound until all are
// chosen, so no two are the same.
func (p *Ports) pick(defaults bool, getenv func(string) string) error {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	used := map[int]string{}
	take := func(n int) bool {
		l, err := net.Listen("tcp", Addr(n))
		if err != nil {
			return false
		}
		held = append(held, l)
		return true
	}
	for _, e := range p.table() {
		env := "HELIX_" + e.name + "_PORT"
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("stack: %s=%q is not a port", env, v)
			}
			if other, ok := used[n]; ok {
				return fmt.Errorf("stack: %s=%d is %s's port too", env, n, other)
			}
			*e.p, used[n] = n, e.name
			continue
		}
		if defaults {
			if _, taken := used[e.def]; !taken && take(e.def) {
				*e.p, used[e.def] = e.def, e.name
				continue
			}
		}
		for tries := 0; ; tries++ {
			n, err := freeport.Pick()
			if err != nil {
				return fmt.Errorf("stack: port %s: %w", e.name, err)
			}
			if _, taken := used[n]; !taken && take(n) {
				*e.p, used[n] = n, e.name
				break
			}
			if tries == 100 {
				return fmt.Errorf("stack: no free port for %s", e.name)
			}
		}
	}
	return nil
}
