package models

import (
	"context"
	"errors"

	pb "github.com/helixflow/helixflow/proto/inference"
)

// loadEnsemble builds the versions of a model with platform "ensemble".
// (Stub: ensembles land with workers/ensemble.)
func (m *Manager) loadEnsemble(ctx context.Context, name, dir string, cfg *pb.ModelConfig) (map[int64]*version, *pb.ModelConfig, error) {
	return nil, nil, errors.New("ensemble models are not implemented yet")
}
