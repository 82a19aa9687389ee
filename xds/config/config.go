// Package config reads the gateway config file (YAML) of helix-xds: the
// listener, TLS files, helix-authz's addresses (ext_authz, and optionally
// its public port, which Envoy then serves on its listener), plans with their rate
// limits (which helix-authz enforces), timeouts, retries, health checks,
// CORS, tracing (Envoy's OpenTelemetry tracer) and traffic policies per
// model (weighted versions and pools, a shadow). It turns
// the file into the static part of an ir.Gateway (Config.Gateway); the
// worker sources fill the pools.
//
//   - Load and Parse decode strictly: an unknown field, a second YAML
//     document, a file over 1 MiB or a value of the wrong type is an error.
//   - Every error names the field path and the line, e.g.
//     "gateway.yaml:7: listener.tls: required unless the listener is on
//     loopback", and wraps ErrInvalidConfig.
//   - Relative file paths are resolved against the config file's
//     directory. They are paths as Envoy sees them (Envoy reads and
//     watches the certificate files itself), so Load does not open them.
//   - Watch polls the file and hands over each new good config; a bad file
//     is reported and the last good config stays in force.
//
// testdata/gateway.yaml is a complete, commented example.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileBytes bounds the config file.
const MaxFileBytes = 1 << 20

// ErrInvalidConfig is wrapped by every error about the file's content.
var ErrInvalidConfig = errors.New("invalid gateway config")

// Config is the gateway config file.
type Config struct {
	Listener    Listener        `yaml:"listener"`
	AuthZ       AuthZ           `yaml:"authz"`
	RateLimit   *RateLimit      `yaml:"ratelimit"`
	Plans       map[string]Plan `yaml:"plans"`
	WorkersTLS  *UpstreamTLS    `yaml:"workers_tls"`
	Timeouts    Timeouts        `yaml:"timeouts"`
	Retry       Retry           `yaml:"retry"`
	HealthCheck HealthCheck     `yaml:"health_check"`
	CORS        *CORS           `yaml:"cors"`
	SourceLimit SourceLimit     `yaml:"source_limit"`
	// Tracing turns Envoy's OpenTelemetry tracer on; absent: off.
	Tracing *Tracing `yaml:"tracing"`
	// WorkerIdentities optionally restricts, per worker identity (a SPIFFE
	// ID, internal/identity), which models it may advertise when it
	// registers (identities.go).
	WorkerIdentities map[string]WorkerIdentity `yaml:"worker_identities"`
	// Traffic is the traffic policy per model (traffic.go): weighted
	// variants by version and pool, stickiness, a shadow.
	Traffic map[string]TrafficPolicy `yaml:"traffic"`

	// path is the file the config came from; lines maps field paths
	// ("listener.tls.cert_file") to their line in it.
	path  string
	lines map[string]int
}

// Listener is the HTTPS listener for gRPC, REST and WebSocket clients.
type Listener struct {
	Address string       `yaml:"address"`
	Port    uint32       `yaml:"port"`
	TLS     *ListenerTLS `yaml:"tls"`
	ALPN    []string     `yaml:"alpn"`
}

// ListenerTLS is the server certificate and key.
type ListenerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	WatchDir string `yaml:"watch_dir"`
}

// UpstreamTLS is mTLS from Envoy to a service.
type UpstreamTLS struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
	WatchDir   string `yaml:"watch_dir"`
}

// AuthZ is helix-authz's ext_authz gRPC service.
type AuthZ struct {
	Address string `yaml:"address"` // host:port
	// Replicas are more helix-authz instances (host:port each) beside
	// Address: Envoy balances Checks across all and retries one that could
	// not reach a replica on another.
	Replicas        []string      `yaml:"replicas"`
	Timeout         time.Duration `yaml:"timeout"`
	MaxRequestBytes uint32        `yaml:"max_request_bytes"`
	// RESTBodyBytes: the REST body bytes sent with a model route's Check
	// (an inference's sequence_id); default 4096.
	RESTBodyBytes    uint32       `yaml:"rest_body_bytes"`
	FailureModeAllow bool         `yaml:"failure_mode_allow"`
	TLS              *UpstreamTLS `yaml:"tls"`
	// Public is helix-authz's public port (OAuth2, the people's API, its
	// pages, the developer portal): with it, Envoy serves those paths on
	// its listener too (xds/translate). Optional.
	Public *PublicUpstream `yaml:"public"`
}

// PublicUpstream is helix-authz's public HTTPS port (its --http-listen),
// where Envoy sends the public paths (wire.PublicPathPrefixes,
// wire.PublicExactPaths) without ext_authz.
type PublicUpstream struct {
	Address string `yaml:"address"` // host:port
	// Replicas are the other helix-authz instances' public ports.
	Replicas []string   `yaml:"replicas"`
	TLS      *PublicTLS `yaml:"tls"`
}

// PublicTLS is how Envoy checks helix-authz's public certificate; the
// public port asks for no client certificate, so there is none here.
type PublicTLS struct {
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
	WatchDir   string `yaml:"watch_dir"`
}

// Failure modes of rate limiting when Redis cannot answer.
const (
	FailOpen   = "open"
	FailClosed = "closed"
)

// RateLimit turns the plans' limits on: helix-authz counts them in Redis
// (its --redis-address) inside its Check.
type RateLimit struct {
	// Domain prefixes helix-authz's Redis keys.
	Domain string `yaml:"domain"`
	// Timeout of one Redis round trip for a decision.
	Timeout time.Duration `yaml:"timeout"`
	// FailureMode is what happens when Redis cannot answer in Timeout:
	// "open" (default: the request passes; it was authenticated already)
	// or "closed" (refused: 503, gRPC UNAVAILABLE).
	FailureMode string `yaml:"failure_mode"`
	// DefaultPlan is the plan (a key of plans) of clients that have none
	// or one not listed; required, so that no client goes unlimited.
	DefaultPlan string `yaml:"default_plan"`
}

// retiredFields are fields a file may still have from an older release;
// each is refused with what replaced it, rather than as an unknown field.
var retiredFields = []struct{ field, reason string }{
	{"ratelimit.address", "helix-ratelimit is retired: helix-authz counts rate limits in Redis itself (its --redis-address flag); remove this field"},
	{"ratelimit.tls", "helix-ratelimit is retired: helix-authz counts rate limits in Redis itself (TLS to Redis: its --redis-tls and --redis-ca-file flags); remove this field"},
}

// SourceLimit is Envoy's per-source-address limit in front of ext_authz,
// on unless Disabled; zero fields take ir's defaults.
type SourceLimit struct {
	RequestsPerSecond uint32 `yaml:"requests_per_second"`
	Burst             uint32 `yaml:"burst"`
	MaxSources        uint32 `yaml:"max_sources"`
	Disabled          bool   `yaml:"disabled"`
}

// Tracing is where Envoy sends its spans and how many requests it samples
// (head sampling: helix-authz and the workers follow Envoy's decision).
type Tracing struct {
	// Collector is the OTLP/gRPC receiver, host:port.
	Collector string `yaml:"collector"`
	// Sampling is the share of requests sampled, 0..1; absent:
	// ir.DefaultTracingSampling (0 is kept: no request is sampled).
	Sampling *float64 `yaml:"sampling"`
	// ServiceName is the spans' service.name; default helix-gateway.
	ServiceName string `yaml:"service_name"`
	// CAFile turns TLS to the collector on (server checked against it);
	// empty: plaintext, allowed only to a loopback collector.
	CAFile string `yaml:"ca_file"`
	// ServerName is the SNI and the DNS name required in the collector's
	// certificate; default: the collector's host when it is a name.
	ServerName string `yaml:"server_name"`
}

// Plan is a set of limits per client per model.
type Plan struct {
	RequestsPerSecond uint32 `yaml:"requests_per_second"`
	RequestsPerMinute uint32 `yaml:"requests_per_minute"`
}

// Timeouts; zero means the default (see ir), except Stream, where zero
// means no limit.
type Timeouts struct {
	Request time.Duration `yaml:"request"`
	Stream  time.Duration `yaml:"stream"`
	Idle    time.Duration `yaml:"idle"`
	Connect time.Duration `yaml:"connect"`
}

// DefaultNumRetries applies when retry.num_retries is absent.
const DefaultNumRetries = 2

// Retry is the retry policy of unary requests.
type Retry struct {
	On                  []string      `yaml:"on"`
	NumRetries          *uint32       `yaml:"num_retries"` // absent: DefaultNumRetries; 0: off
	PerTryTimeout       time.Duration `yaml:"per_try_timeout"`
	BudgetPercent       float64       `yaml:"budget_percent"`
	MinRetryConcurrency uint32        `yaml:"min_retry_concurrency"`
}

// HealthCheck tunes Envoy's active health checks of workers.
type HealthCheck struct {
	Interval           time.Duration `yaml:"interval"`
	Timeout            time.Duration `yaml:"timeout"`
	NoTrafficInterval  time.Duration `yaml:"no_traffic_interval"`
	UnhealthyThreshold uint32        `yaml:"unhealthy_threshold"`
	HealthyThreshold   uint32        `yaml:"healthy_threshold"`
}

// CORS lets browsers on the listed origins call the REST API.
type CORS struct {
	AllowOrigins     []string      `yaml:"allow_origins"`
	AllowMethods     []string      `yaml:"allow_methods"`
	AllowHeaders     []string      `yaml:"allow_headers"`
	ExposeHeaders    []string      `yaml:"expose_headers"`
	MaxAge           time.Duration `yaml:"max_age"`
	AllowCredentials bool          `yaml:"allow_credentials"`
}

// Path is the file the config was read from.
func (c *Config) Path() string { return c.path }

// Load reads, decodes and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse decodes and validates config file content; path names the file in
// errors and is the base of relative file paths (it is not read).
func Parse(data []byte, path string) (*Config, error) {
	if len(data) > MaxFileBytes {
		return nil, &FieldError{File: path, Reason: fmt.Sprintf("larger than %d bytes", MaxFileBytes)}
	}
	c := &Config{path: path, lines: map[string]int{}}
	// Lines first: a retired field is named before strict decoding would
	// call it unknown.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(path, err)
	}
	collectLines(&root, "", c.lines)
	var retired []error
	for _, r := range retiredFields {
		if line, ok := c.lines[r.field]; ok {
			retired = append(retired, &FieldError{File: path, Line: line, Field: r.field, Reason: r.reason})
		}
	}
	if len(retired) > 0 {
		return nil, errors.Join(retired...)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{File: path, Reason: "empty file"}
		}
		return nil, yamlError(path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &FieldError{File: path, Reason: "more than one YAML document"}
	}
	c.resolvePaths(filepath.Dir(path))
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// yamlGoType matches the Go type names yaml.v3 puts in its messages.
var yamlGoType = regexp.MustCompile(` in type [\w.*\[\]]+`)

// yamlLine matches yaml.v3's "line N: message".
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError rewrites yaml.v3's errors as "file:line: message", one per
// problem, without Go type names.
func yamlError(path string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]error, 0, len(msgs))
	for _, m := range msgs {
		m = yamlGoType.ReplaceAllString(m, "")
		if g := yamlLine.FindStringSubmatch(m); g != nil {
			line, _ := strconv.Atoi(g[1])
			out = append(out, &FieldError{File: path, Line: line, Reason: g[2]})
			continue
		}
		out = append(out, &FieldError{File: path, Reason: strings.TrimPrefix(m, "yaml: ")})
	}
	return errors.Join(out...)
}

// collectLines records the line of every mapping key and sequence item.
func collectLines(n *yaml.Node, prefix string, lines map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectLines(c, prefix, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			if _, seen := lines[p]; !seen {
				lines[p] = k.Line
			}
			collectLines(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			lines[p] = c.Line
			collectLines(c, p, lines)
		}
	}
}

// resolvePaths makes relative file paths absolute against dir.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			if d, err := filepath.Abs(dir); err == nil {
				*p = filepath.Join(d, *p)
			}
		}
	}
	upstream := func(t *UpstreamTLS) {
		if t != nil {
			abs(&t.CAFile)
			abs(&t.CertFile)
			abs(&t.KeyFile)
			abs(&t.WatchDir)
		}
	}
	if t := c.Listener.TLS; t != nil {
		abs(&t.CertFile)
		abs(&t.KeyFile)
		abs(&t.WatchDir)
	}
	upstream(c.AuthZ.TLS)
	upstream(c.WorkersTLS)
	if p := c.AuthZ.Public; p != nil && p.TLS != nil {
		abs(&p.TLS.CAFile)
		abs(&p.TLS.WatchDir)
	}
	if t := c.Tracing; t != nil {
		abs(&t.CAFile)
	}
}
