package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/envoyproxy/ratelimit/src/settings"
)

// checkClientIDs: --client-ids goes with TLS, and TLS needs it: every
// component's certificate comes from the client CA.
func (o *options) checkClientIDs() error {
	switch {
	case o.tlsCert != "" && len(clientIDs(o.clientIDs)) == 0:
		return errors.New("--client-ids is required with TLS: name the identities that may call (Envoy's)")
	case o.tlsCert == "" && o.clientIDs != "":
		return errors.New("--client-ids needs --tls-cert-file, --tls-key-file and --client-ca-file")
	}
	return nil
}

// restrictClients narrows the service's gRPC TLS to --client-ca-file alone
// and to the identities of --client-ids. The service keeps s's config and
// sets only the certificate getter on it.
func (o *options) restrictClients(s *settings.Settings) error {
	if o.tlsCert == "" {
		return nil
	}
	pool, err := clientCAPool(o.clientCA)
	if err != nil {
		return err
	}
	s.GrpcServerTlsConfig.ClientCAs = pool
	s.GrpcServerTlsConfig.VerifyConnection = verifyClientIDs(clientIDs(o.clientIDs))
	return nil
}

// clientIDs splits --client-ids.
func clientIDs(flag string) []string {
	var out []string
	for id := range strings.SplitSeq(flag, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}

// errClientID: a client certificate does not carry an accepted identity.
var errClientID = errors.New("client identity not accepted")

// verifyClientIDs is the gRPC listener's tls.Config.VerifyConnection: the
// verified client certificate must carry exactly one SPIFFE ID (URI SAN),
// one of ids. Every component's certificate comes from the same CA; without
// this, a worker's could call ShouldRateLimit and spend any client's quota.
//
// The rule's home is the main module's internal/identity, which this
// module cannot import (see go.mod): helix-xds's callers pass its
// identity.RateLimitCallers as --client-ids, and this only compares.
func verifyClientIDs(ids []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
			return fmt.Errorf("%w: no verified client certificate", errClientID)
		}
		var found []string
		for _, u := range cs.VerifiedChains[0][0].URIs {
			if u.Scheme == "spiffe" {
				found = append(found, u.String())
			}
		}
		if len(found) != 1 || !slices.Contains(ids, found[0]) {
			return fmt.Errorf("%w: SPIFFE IDs %v, want one of %v", errClientID, found, ids)
		}
		return nil
	}
}

// clientCAPool is --client-ca-file alone: envoyproxy/ratelimit would add
// the system's roots to it, and any public CA's client certificate would
// then complete the handshake.
func clientCAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--client-ca-file %s: no PEM certificate", file)
	}
	return pool, nil
}
