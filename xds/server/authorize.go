package server

import (
	"context"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/identity"
)

// authorize checks an ADS stream's caller when it opens (Options.Readers):
// the workers' client certificates come from the same CA as Envoy's, and
// Envoy's config holds its secrets.
func (s *Server) authorize(ctx context.Context) (id string, err error) {
	if s.readers == nil {
		return "", nil
	}
	id, err = identity.FromContext(ctx)
	if err != nil {
		return "", status.Errorf(codes.PermissionDenied, "ADS: %v", err)
	}
	if !slices.Contains(s.readers, id) {
		return id, status.Errorf(codes.PermissionDenied, "ADS: %s may not subscribe (accepted: %v)", id, s.readers)
	}
	return id, nil
}
