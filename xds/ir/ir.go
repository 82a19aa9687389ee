package ir

import "time"

// Gateway is everything translation needs to program Envoy.
type Gateway struct {
	Listener Listener `yaml:"listener"`
	AuthZ    AuthZ    `yaml:"authz"`
	// RateLimit holds the plans helix-authz enforces inside its Check;
	// Envoy gets nothing of it (no filter, no cluster). nil: no limits.
	RateLimit *RateLimit `yaml:"ratelimit,omitempty"`
	// Workers is the TLS Envoy uses towards workers; nil: plaintext, allowed
	// only when every endpoint is on loopback.
	Workers     *UpstreamTLS `yaml:"workers_tls,omitempty"`
	Timeouts    Timeouts     `yaml:"timeouts"`
	Retry       Retry        `yaml:"retry"`
	HealthCheck HealthCheck  `yaml:"health_check"`
	CORS        *CORS        `yaml:"cors,omitempty"` // nil: no CORS filter
	// SourceLimit is the per-source-address limit in front of ext_authz;
	// nil: none.
	SourceLimit *SourceLimit `yaml:"source_limit,omitempty"`
	// Tracing sends Envoy's spans to an OTLP collector; nil: no tracing.
	Tracing *Tracing `yaml:"tracing,omitempty"`
	// Pools has one pool per model that at least one worker has loaded.
	Pools []Pool `yaml:"pools"`
	// DefaultPool holds every worker once; it serves server metadata and
	// health, unknown models and ModelStreamInfer (whose model is not known
	// at routing time). Its Model is empty.
	DefaultPool Pool `yaml:"default_pool"`
}

// Listener is the one downstream listener for gRPC, REST and WebSocket.
type Listener struct {
	Address string       `yaml:"address"`
	Port    uint32       `yaml:"port"`
	TLS     *ListenerTLS `yaml:"tls,omitempty"` // nil: plaintext, loopback only
	// ALPN is offered in the TLS handshake; default h2, http/1.1.
	ALPN []string `yaml:"alpn,omitempty"`
}

// ListenerTLS names the server certificate and key as files on Envoy's
// file system. Envoy reads them itself (see xds/translate, secrets.go) and
// picks up a rotated pair without a restart.
type ListenerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// WatchDir, when set, is the directory whose moves trigger a reload
	// (Kubernetes secret volumes swap a "..data" symlink); default: the
	// files' own directories.
	WatchDir string `yaml:"watch_dir,omitempty"`
}

// UpstreamTLS is the client side of mTLS from Envoy to a service: the CA
// that signed the service's certificate, and Envoy's client certificate.
type UpstreamTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is sent as SNI and must be a DNS SAN of the service's
	// certificate (required: without it any certificate from CAFile would
	// do).
	ServerName string `yaml:"server_name,omitempty"`
	WatchDir   string `yaml:"watch_dir,omitempty"`
}

// Upstream is a service Envoy calls on the side (helix-authz, ratelimit).
type Upstream struct {
	// Address is an IP address or a DNS name (resolved by Envoy).
	Address string `yaml:"address"`
	Port    uint32 `yaml:"port"`
	// Replicas are more instances of the same service (helix-authz runs
	// several): Envoy balances calls across Address and these, and
	// retries a call that failed on one on another.
	Replicas []Replica    `yaml:"replicas,omitempty"`
	TLS      *UpstreamTLS `yaml:"tls,omitempty"` // nil: plaintext, loopback only
}

// Replica is one more address of an Upstream.
type Replica struct {
	Address string `yaml:"address"`
	Port    uint32 `yaml:"port"`
}

// AuthZ configures the ext_authz filter that calls helix-authz.
type AuthZ struct {
	Upstream Upstream `yaml:"upstream"`
	// Timeout of one Check; default 1s (Envoy's own 200ms is too short for
	// a first token verification under load).
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// MaxRequestBytes is how much of a unary gRPC body is sent with the
	// check so helix-authz can read the model name; default 256.
	MaxRequestBytes uint32 `yaml:"max_request_bytes,omitempty"`
	// RESTBodyBytes is how much of a REST request's body on a model's
	// routes is sent with the check, so helix-authz can read an
	// inference's parameters.sequence_id (sequence routing; tritonclient
	// writes it after the inputs' JSON head); default 4096.
	RESTBodyBytes uint32 `yaml:"rest_body_bytes,omitempty"`
	// FailureModeAllow lets requests through when helix-authz cannot be
	// reached. Off by default and in every shipped config.
	FailureModeAllow bool `yaml:"failure_mode_allow,omitempty"`
	// Public is helix-authz's public port (HTTPS: OAuth2, the people's
	// API, its pages, the developer portal). With it, Envoy routes
	// wire.PublicPathPrefixes and wire.PublicExactPaths there, ahead of the
	// model routes and without ext_authz, so that models, tokens and the
	// portal share one origin. nil: Envoy does not route those paths. Its
	// TLS checks the server (CAFile, ServerName); a client certificate
	// (CertFile, KeyFile) is optional, as the public port asks for none.
	Public *Upstream `yaml:"public,omitempty"`
}

// RateLimit is the rate limiting helix-authz applies in its Check, with
// counters in Redis (extauthz/ratelimit).
type RateLimit struct {
	// Domain prefixes helix-authz's Redis keys; default "helixflow".
	Domain string `yaml:"domain,omitempty"`
	// Timeout of one Redis round trip for a decision; default 100ms.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// FailureModeDeny refuses requests (503, gRPC UNAVAILABLE) when Redis
	// cannot answer in Timeout; default false (they pass). Authentication
	// never fails open: it is decided first.
	FailureModeDeny bool `yaml:"failure_mode_deny,omitempty"`
	// Plans are the limits per client per model.
	Plans []Plan `yaml:"plans,omitempty"`
	// DefaultPlan names the plan of clients that have none or one not in
	// Plans (required, one of Plans: no client goes unlimited).
	DefaultPlan string `yaml:"default_plan,omitempty"`
}

// SourceLimit is Envoy's local rate limit per source address (the TCP
// peer; IPv6 per /64), applied before ext_authz so that a flood from one
// address is refused (429, gRPC RESOURCE_EXHAUSTED) without costing a
// Check. Each Envoy counts on its own.
type SourceLimit struct {
	// RequestsPerSecond each source may send; default 1000.
	RequestsPerSecond uint32 `yaml:"requests_per_second,omitempty"`
	// Burst a source may send at once; default twice RequestsPerSecond.
	Burst uint32 `yaml:"burst,omitempty"`
	// MaxSources bounds the sources Envoy tracks (least recently seen
	// forgotten first); default 10000.
	MaxSources uint32 `yaml:"max_sources,omitempty"`
}

// Tracing is Envoy's OpenTelemetry tracer: the gateway makes the head
// sampling decision for every request (helix-authz and the workers follow
// the parent's), and exports its spans over OTLP/gRPC to Collector.
type Tracing struct {
	// Collector is the OTLP/gRPC receiver. Its TLS checks the server only
	// (CAFile, ServerName; a client certificate is optional); nil TLS:
	// plaintext, allowed only to a loopback collector.
	Collector Upstream `yaml:"collector"`
	// Sampling is the share of requests the gateway samples, 0..1. Zero is
	// a meaning (no trace), so the default (DefaultTracingSampling) is
	// applied by the config file, not by ApplyDefaults.
	Sampling float64 `yaml:"sampling"`
	// ServiceName is the spans' service.name; default "helix-gateway".
	ServiceName string `yaml:"service_name,omitempty"`
}

// Plan is a named set of limits, applied per client and per model.
type Plan struct {
	Name              string `yaml:"name"`
	RequestsPerSecond uint32 `yaml:"requests_per_second,omitempty"`
	RequestsPerMinute uint32 `yaml:"requests_per_minute,omitempty"`
}

// Timeouts of requests through the gateway.
type Timeouts struct {
	// Request bounds a unary request (route timeout); default 60s.
	Request time.Duration `yaml:"request,omitempty"`
	// Stream bounds a ModelStreamInfer stream; 0 means no limit.
	Stream time.Duration `yaml:"stream,omitempty"`
	// Idle closes a stream with no activity; default 5m.
	Idle time.Duration `yaml:"idle,omitempty"`
	// Connect bounds a TCP+TLS connect to any upstream; default 1s.
	Connect time.Duration `yaml:"connect,omitempty"`
}

// Retry is the retry policy of unary routes; streams are never retried.
type Retry struct {
	// On lists Envoy retry conditions; default unavailable,
	// gateway-error, connect-failure, reset (DefaultRetryOn).
	On         []string `yaml:"on,omitempty"`
	NumRetries uint32   `yaml:"num_retries"`
	// PerTryTimeout bounds each try; 0: the request timeout.
	PerTryTimeout time.Duration `yaml:"per_try_timeout,omitempty"`
	// BudgetPercent caps concurrent retries as a share of active requests
	// per pool; default 20.
	BudgetPercent float64 `yaml:"budget_percent,omitempty"`
	// MinRetryConcurrency is allowed regardless of the budget; default 3.
	MinRetryConcurrency uint32 `yaml:"min_retry_concurrency,omitempty"`
}

// HealthCheck is Envoy's active gRPC/HTTP health checking of workers.
type HealthCheck struct {
	Interval           time.Duration `yaml:"interval,omitempty"`            // default 2s
	Timeout            time.Duration `yaml:"timeout,omitempty"`             // default 1s
	NoTrafficInterval  time.Duration `yaml:"no_traffic_interval,omitempty"` // default 10s
	UnhealthyThreshold uint32        `yaml:"unhealthy_threshold,omitempty"` // default 2
	HealthyThreshold   uint32        `yaml:"healthy_threshold,omitempty"`   // default 1
}

// CORS lets browsers on the listed origins call the REST API.
type CORS struct {
	// AllowOrigins are exact origins ("https://app.example.com") or "*".
	AllowOrigins     []string      `yaml:"allow_origins"`
	AllowMethods     []string      `yaml:"allow_methods,omitempty"`
	AllowHeaders     []string      `yaml:"allow_headers,omitempty"`
	ExposeHeaders    []string      `yaml:"expose_headers,omitempty"`
	MaxAge           time.Duration `yaml:"max_age,omitempty"`
	AllowCredentials bool          `yaml:"allow_credentials,omitempty"`
}

// Pool is the set of workers that serve one model.
type Pool struct {
	Model     string     `yaml:"model"`
	Endpoints []Endpoint `yaml:"endpoints"`
	// Sequence: the model uses Triton's sequence batching (a worker's
	// registration says so, or the Kubernetes Service's sequence-models
	// annotation). Only such a pool gets the consistent-hash twins of its
	// clusters, the sequence routes and the REST body sent to helix-authz
	// (xds/translate); false for the default pool.
	Sequence bool `yaml:"sequence,omitempty"`
	// Traffic is the model's traffic policy: the gateway config's
	// traffic.<model>, or an active rollout's weights, which replace it.
	// nil: every request goes to the pool's one set of clusters.
	Traffic *Traffic `yaml:"traffic,omitempty"`
}

// Traffic splits a model's requests that name no version across
// variants, and may mirror a share of them to a shadow.
type Traffic struct {
	// Variants, in the order the config lists them; their weights add up
	// to 100.
	Variants []Variant `yaml:"variants"`
	// Sticky: a client keeps one variant (Envoy picks by
	// wire.HeaderAssignment); false: each request is drawn at random.
	Sticky bool `yaml:"sticky"`
	// Shadow, when set, receives a copy of Percent of the model's requests;
	// its answers are discarded.
	Shadow *Shadow `yaml:"shadow,omitempty"`
}

// Variant is one side of a split: the model's endpoints that serve Version
// (any version: "") in Pool (any pool: "").
type Variant struct {
	// Name names the variant in cluster names, metrics, rollouts and
	// wire.HeaderVariant: [a-z0-9-], at most 32 bytes.
	Name    string `yaml:"name"`
	Version string `yaml:"version,omitempty"`
	Pool    string `yaml:"pool,omitempty"`
	// Weight is the variant's share in percent (0..100).
	Weight uint32 `yaml:"weight"`
}

// Shadow mirrors a share of a model's requests to a variant.
type Shadow struct {
	Variant Variant `yaml:"variant"`
	// Percent of the model's requests mirrored, 0 < Percent <= 100.
	Percent float64 `yaml:"percent"`
}

// Endpoint is one worker in a pool.
type Endpoint struct {
	// Address is the worker's IP address (EDS takes no DNS names).
	Address string `yaml:"address"`
	// Port is the KServe v2 gRPC port.
	Port uint32 `yaml:"port"`
	// HTTPPort is the KServe v2 REST port; 0: the worker serves no REST.
	HTTPPort uint32 `yaml:"http_port,omitempty"`
	// Ready: only ready endpoints get traffic.
	Ready bool `yaml:"ready"`
	// Versions of the model the worker has loaded (informational).
	Versions []string `yaml:"versions,omitempty"`
	// Worker is the worker's id as it registered.
	Worker string `yaml:"worker,omitempty"`
	// Pool is the worker's pool (registry.Worker.Pool; "" is
	// wire.DefaultPool).
	Pool string `yaml:"pool,omitempty"`
}
