package registry

import (
	"context"
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
