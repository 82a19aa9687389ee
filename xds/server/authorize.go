package server

import (
	"context"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/identity"
)

// authorize checks an ADS stream's caller when it opens (Options.Readers
// and RateLimitReaders): the workers' client certificates come from the
// same CA as Envoy's, and Envoy's config holds its secrets. rateLimitOnly:
// the caller may read the ratelimit config only.
func (s *Server) authorize(ctx context.Context) (id string, rateLimitOnly bool, err error) {
	if s.readers == nil && s.rateLimitReaders == nil {
		return "", false, nil
	}
	id, err = identity.FromContext(ctx)
	if err != nil {
		return "", false, status.Errorf(codes.PermissionDenied, "ADS: %v", err)
	}
	switch {
	case slices.Contains(s.readers, id):
		return id, false, nil
	case slices.Contains(s.rateLimitReaders, id):
		return id, true, nil
	}
	return id, false, status.Errorf(codes.PermissionDenied, "ADS: %s may not subscribe (accepted: %v, and %v for the ratelimit config)", id, s.readers, s.rateLimitReaders)
}
