// Package identity is the one home of who may talk to whom inside
// HelixFlow. Every component's certificate carries one SPIFFE ID (a URI
// SAN) in the trust domain TrustDomain:
//
//	spiffe://helixflow.local/envoy              Envoy's client certificates
//	spiffe://helixflow.local/helix-xds          helix-xds
//	spiffe://helixflow.local/helix-authz        helix-authz
//	spiffe://helixflow.local/worker/<name>      a worker, or a pool of them
//
// The rules, each enforced on a verified client certificate:
//
//	listener                              accepts
//	workers (KServe v2 HTTP and gRPC)     Envoy
//	helix-authz ext_authz (gRPC)          Envoy (a Check spends the client's
//	                                      rate-limit quota)
//	helix-xds ADS                         Envoy
//	helix-xds worker registry             any worker identity, bound to the
//	                                      worker ids it registered (xds/registry)
//	helix-xds model catalogue             helix-authz (it filters the list by
//	                                      each caller's scopes)
//	helix-authz usage Ledger and Limits   any worker identity (a worker reports
//	(gRPC, the ext_authz listener)        what it served and asks per stream
//	                                      message; Check stays Envoy's)
//
// A certificate's CA alone says nothing: every component's certificate
// comes from the same CA, so without these checks a worker's certificate
// could call another worker (model load and unload included) or spend any
// client's rate-limit quota through ext_authz.
//
// internal/pki issues the local certificates with these IDs,
// internal/tlsfiles applies PeerVerifier to the servers' TLS, xds/registry
// and xds/server read the caller's ID with FromContext. The Helm chart's
// templates/_identity.tpl, which TestHelmTemplate keeps equal to this
// package, gives its certificates the same IDs.
package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// TrustDomain is the SPIFFE trust domain of HelixFlow's identities.
const TrustDomain = "helixflow.local"

const prefix = "spiffe://" + TrustDomain + "/"

// workerPath is the path prefix of worker identities.
const workerPath = "worker/"

// The components' identities.
const (
	Envoy = prefix + "envoy"
	XDS   = prefix + "helix-xds"
	Authz = prefix + "helix-authz"
)

// Component returns the identity of a component by its name (a path
// segment: "envoy", "helix-xds"); the local PKI names certificates so.
func Component(name string) string { return prefix + name }

// ErrDenied: the peer's certificate carries no identity, or not one the
// listener accepts. The error says which it was and which were accepted.
var ErrDenied = errors.New("peer identity not accepted")

// ErrInvalid: a string is not an identity of the trust domain.
var ErrInvalid = errors.New("invalid identity")

// workerNameRE: a worker name is a DNS label (a Kubernetes Deployment name
// fits), so that it is safe as a file name and a path segment.
var workerNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidWorkerName reports why name cannot name a worker identity, or nil.
func ValidWorkerName(name string) error {
	if !workerNameRE.MatchString(name) {
		return fmt.Errorf("%w: worker name %q: want a DNS label (lowercase letters, digits and '-', at most 63)", ErrInvalid, name)
	}
	return nil
}

// Worker returns the identity of the worker (or worker pool) name; name
// must pass ValidWorkerName.
func Worker(name string) string { return prefix + workerPath + name }

// WorkerName returns the name of a worker identity; ok is false for any
// other string.
func WorkerName(id string) (name string, ok bool) {
	name, ok = strings.CutPrefix(id, prefix+workerPath)
	return name, ok && ValidWorkerName(name) == nil
}

// ParseWorker checks that id is a worker identity, naming what is wrong.
func ParseWorker(id string) error {
	if _, ok := WorkerName(id); !ok {
		return fmt.Errorf("%w: %q: want %s<name>, name a DNS label", ErrInvalid, id, prefix+workerPath)
	}
	return nil
}

// URI is id as a certificate's URI SAN.
func URI(id string) *url.URL {
	u, err := url.Parse(id)
	if err != nil {
		panic(fmt.Sprintf("identity %q: %v", id, err)) // ids come from this package's functions
	}
	return u
}

// FromCert returns the identity a certificate carries: its one spiffe URI
// SAN in the trust domain. A certificate with none, or with several (which
// would be ambiguous), has no identity.
func FromCert(c *x509.Certificate) (string, error) {
	var found []string
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			found = append(found, u.String())
		}
	}
	switch {
	case len(found) == 0:
		return "", fmt.Errorf("%w: certificate %q carries no SPIFFE ID", ErrDenied, c.Subject.CommonName)
	case len(found) > 1:
		return "", fmt.Errorf("%w: certificate %q carries %d SPIFFE IDs, want one", ErrDenied, c.Subject.CommonName, len(found))
	case !strings.HasPrefix(found[0], prefix):
		return "", fmt.Errorf("%w: certificate %q: SPIFFE ID %s is outside trust domain %s", ErrDenied, c.Subject.CommonName, found[0], TrustDomain)
	}
	return found[0], nil
}

// FromState returns the identity of a TLS peer whose certificate the
// handshake verified.
func FromState(cs tls.ConnectionState) (string, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", fmt.Errorf("%w: no verified client certificate", ErrDenied)
	}
	return FromCert(cs.VerifiedChains[0][0])
}

// FromContext returns the identity of a gRPC call's peer.
func FromContext(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "", fmt.Errorf("%w: the connection has no TLS", ErrDenied)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", fmt.Errorf("%w: the connection has no TLS", ErrDenied)
	}
	return FromState(info.State)
}

// Require checks that a verified peer is one of accepted.
func Require(cs tls.ConnectionState, accepted ...string) (string, error) {
	id, err := FromState(cs)
	if err != nil {
		return "", err
	}
	if !slices.Contains(accepted, id) {
		return id, fmt.Errorf("%w: %s may not call this listener (accepted: %s)", ErrDenied, id, strings.Join(accepted, ", "))
	}
	return id, nil
}

// PeerVerifier returns a tls.Config.VerifyConnection that admits only
// peers whose verified certificate carries one of accepted; the handshake
// fails otherwise. It runs after the chain was verified (ClientAuth
// RequireAndVerifyClientCert), and on resumed sessions too.
func PeerVerifier(accepted ...string) func(tls.ConnectionState) error {
	accepted = slices.Clone(accepted)
	return func(cs tls.ConnectionState) error {
		_, err := Require(cs, accepted...)
		return err
	}
}

// Who each listener accepts: the table in the package doc. Functions, so
// that no caller can change the rules for the others.

// WorkerCallers may call the workers' KServe v2 listeners (inference,
// repository load and unload).
func WorkerCallers() []string { return []string{Envoy} }

// AuthzCallers may call helix-authz's ext_authz listener (a Check spends
// the client's rate-limit quota).
func AuthzCallers() []string { return []string{Envoy} }

// CatalogReaders may call helix-xds's Catalog service: helix-authz, which
// serves the list to people and clients filtered by their scopes (the
// unfiltered list is not for them).
func CatalogReaders() []string { return []string{Authz} }

// AuthzWorkerCaller reports whether id may call helix-authz's services for
// workers, the usage Ledger and the per-message Limits: any worker
// identity. The ext_authz listener's handshake admits Envoy and workers
// (AuthzListenerPeer); each service then admits only its own callers, so a
// worker still cannot call Check.
func AuthzWorkerCaller(id string) bool {
	_, ok := WorkerName(id)
	return ok
}

// AuthzListenerPeer is the handshake rule of helix-authz's gRPC listener,
// which serves Check (AuthzCallers) and the workers' services (AuthzWorkerCaller).
func AuthzListenerPeer(cs tls.ConnectionState) error {
	id, err := FromState(cs)
	if err != nil {
		return err
	}
	if slices.Contains(AuthzCallers(), id) || AuthzWorkerCaller(id) {
		return nil
	}
	return fmt.Errorf("%w: %s may not call helix-authz's gRPC listener (accepted: %s, or a worker identity)", ErrDenied, id, strings.Join(AuthzCallers(), ", "))
}

// ADSReaders may subscribe to every resource type helix-xds serves
// (Envoy's listeners, clusters and secrets included).
func ADSReaders() []string { return []string{Envoy} }
