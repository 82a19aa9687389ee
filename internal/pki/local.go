package pki

import (
	"net"
	"net/url"
)

// TrustDomain is the SPIFFE trust domain of the local PKI's URI SANs, which
// name the component a certificate belongs to.
const TrustDomain = "helixflow.local"

// File stems of the local stack's certificates (see LocalSpecs).
const (
	EnvoyServer       = "envoy-server"        // Envoy's listener: clients connect here
	XDSServer         = "xds-server"          // helix-xds's gRPC (ADS and worker registry)
	AuthzServer       = "authz-server"        // helix-authz's OAuth2, ext_authz and admin listeners
	WorkerServer      = "worker-server"       // the workers' KServe v2 listeners
	EnvoyXDSClient    = "envoy-xds-client"    // Envoy -> helix-xds
	EnvoyWorkerClient = "envoy-worker-client" // Envoy -> workers
	EnvoyAuthzClient  = "envoy-authz-client"  // Envoy -> helix-authz ext_authz
	WorkerXDSClient   = "worker-xds-client"   // workers -> helix-xds registry
	// helix-ratelimit's gRPC; Envoy -> helix-ratelimit; helix-ratelimit ->
	// helix-xds (its limits).
	RateLimitServer      = "ratelimit-server"
	EnvoyRateLimitClient = "envoy-ratelimit-client"
	RateLimitXDSClient   = "ratelimit-xds-client"
)

// LocalSpecs are the certificates of a single-machine stack: a server
// certificate per component (its name as a DNS SAN, for SNI checks, plus
// localhost and the loopback addresses) and a client certificate per
// connection that uses mTLS.
func LocalSpecs() []Spec {
	server := func(name, cn string, dns ...string) Spec {
		return Spec{
			Name: name, CommonName: cn, Usage: ServerAuth,
			DNSNames: append(dns, "localhost"),
			// localhost may resolve to either.
			IPs:  []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP("::1")},
			URIs: []*url.URL{spiffeID(cn)},
		}
	}
	client := func(name, cn string) Spec {
		return Spec{Name: name, CommonName: cn, Usage: ClientAuth, URIs: []*url.URL{spiffeID(cn)}}
	}
	return []Spec{
		server(EnvoyServer, "envoy"),
		server(XDSServer, "helix-xds", "helix-xds"),
		server(AuthzServer, "helix-authz", "helix-authz"),
		server(WorkerServer, "helix-worker", "helix-worker"),
		server(RateLimitServer, "helix-ratelimit", "helix-ratelimit"),
		client(EnvoyXDSClient, "envoy"),
		client(EnvoyWorkerClient, "envoy"),
		client(EnvoyAuthzClient, "envoy"),
		client(WorkerXDSClient, "helix-worker"),
		client(EnvoyRateLimitClient, "envoy"),
		client(RateLimitXDSClient, "helix-ratelimit"),
	}
}

func spiffeID(component string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/" + component}
}
