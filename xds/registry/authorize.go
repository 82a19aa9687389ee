package registry

import (
	"context"
	"fmt"

	"github.com/helixflow/helixflow/internal/identity"
)

// WorkerIdentity is helix-xds's Config.Identify: the caller's verified
// client certificate must carry a worker identity (identity.Worker), one
// per worker or per pool of workers. Every component's client certificate
// comes from the same CA; without this, Envoy's could
// register a worker and be sent inference traffic.
func WorkerIdentity(ctx context.Context) (string, error) {
	id, err := identity.FromContext(ctx)
	if err != nil {
		return "", err
	}
	if err := identity.ParseWorker(id); err != nil {
		return "", fmt.Errorf("%w: %s is not a worker identity", identity.ErrDenied, id)
	}
	return id, nil
}
