package pki

import (
	"fmt"
	"net"
	"net/url"

	"github.com/helixflow/helixflow/internal/identity"
)

// File stems of the local stack's certificates (see LocalSpecs).
const (
	EnvoyServer       = "envoy-server"        // Envoy's listener: clients connect here
	XDSServer         = "xds-server"          // helix-xds's gRPC (ADS and worker registry)
	AuthzServer       = "authz-server"        // helix-authz's OAuth2, ext_authz and admin listeners
	WorkerServer      = "worker-server"       // the workers' KServe v2 listeners
	EnvoyXDSClient    = "envoy-xds-client"    // Envoy -> helix-xds
	EnvoyWorkerClient = "envoy-worker-client" // Envoy -> workers
	EnvoyAuthzClient  = "envoy-authz-client"  // Envoy -> helix-authz ext_authz
	AuthzXDSClient    = "authz-xds-client"    // helix-authz -> helix-xds (the model catalogue)
)

// LocalSpecs are the certificates of a single-machine stack: a server
// certificate per component (its name as a DNS SAN, for SNI checks, plus
// localhost and the loopback addresses) and a client certificate per
// connection that uses mTLS, each carrying its component's identity
// (internal/identity) as a URI SAN. Workers' client certificates, one per
// worker, are WorkerClient's.
func LocalSpecs() []Spec {
	server := func(name, cn string, dns ...string) Spec {
		return Spec{
			Name: name, CommonName: cn, Usage: ServerAuth,
			DNSNames: append(dns, "localhost"),
			// localhost may resolve to either.
			IPs:  []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP("::1")},
			URIs: []*url.URL{identity.URI(identity.Component(cn))},
		}
	}
	client := func(name, cn string) Spec {
		return Spec{Name: name, CommonName: cn, Usage: ClientAuth, URIs: []*url.URL{identity.URI(identity.Component(cn))}}
	}
	return []Spec{
		server(EnvoyServer, "envoy"),
		server(XDSServer, "helix-xds", "helix-xds"),
		server(AuthzServer, "helix-authz", "helix-authz"),
		server(WorkerServer, "helix-worker", "helix-worker"),
		client(EnvoyXDSClient, "envoy"),
		client(EnvoyWorkerClient, "envoy"),
		client(EnvoyAuthzClient, "envoy"),
		client(AuthzXDSClient, "helix-authz"),
	}
}

// WorkerClientName is the file stem of worker name's client certificate.
func WorkerClientName(name string) string { return "worker-" + name + "-client" }

// WorkerClient is the client certificate worker name presents to helix-xds
// (its registry): the worker's own identity, identity.Worker(name), to
// which helix-xds binds the worker ids it registers. name must pass
// identity.ValidWorkerName.
func WorkerClient(name string) (Spec, error) {
	if err := identity.ValidWorkerName(name); err != nil {
		return Spec{}, fmt.Errorf("%w: %w", ErrSpec, err)
	}
	return Spec{
		Name: WorkerClientName(name), CommonName: "helix-worker " + name, Usage: ClientAuth,
		URIs: []*url.URL{identity.URI(identity.Worker(name))},
	}, nil
}
