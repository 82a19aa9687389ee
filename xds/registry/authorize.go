package registry

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ErrNoClientCert is returned by RequireClientCert.
var ErrNoClientCert = errors.New("no verified client certificate")

// RequireClientCert is an Authorize hook that admits a request only when it
// came over TLS with a client certificate the server verified. It does not
// tie the certificate to the worker id; wrap it for that.
func RequireClientCert(ctx context.Context, _ string) error {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return fmt.Errorf("%w: the connection has no TLS", ErrNoClientCert)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return fmt.Errorf("%w: the connection has no TLS", ErrNoClientCert)
	}
	if len(info.State.VerifiedChains) == 0 {
		return ErrNoClientCert
	}
	return nil
}

// RequireClientName returns an Authorize hook that admits a request only
// with a verified client certificate naming one of names, as its common
// name or a DNS or URI subject alternative name. Every component's client
// certificate comes from the same CA; without this, Envoy's or the
// ratelimit service's could register a worker and be sent inference
// traffic.
func RequireClientName(names ...string) func(context.Context, string) error {
	allowed := make(map[string]bool, len(names))
	for _, n := range names {
		allowed[n] = true
	}
	return func(ctx context.Context, workerID string) error {
		if err := RequireClientCert(ctx, workerID); err != nil {
			return err
		}
		p, _ := peer.FromContext(ctx)
		leaf := p.AuthInfo.(credentials.TLSInfo).State.VerifiedChains[0][0]
		for _, n := range certNames(leaf) {
			if allowed[n] {
				return nil
			}
		}
		return fmt.Errorf("%w: client certificate %q names none of the worker identities %v", ErrNotWorker, leaf.Subject.CommonName, names)
	}
}

// ErrNotWorker is returned by RequireClientName's hook.
var ErrNotWorker = errors.New("not a worker's certificate")

func certNames(c *x509.Certificate) []string {
	out := append([]string{c.Subject.CommonName}, c.DNSNames...)
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}
