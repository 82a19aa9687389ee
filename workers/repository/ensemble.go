package repository

import (
	"fmt"

	pb "github.com/helixflow/helixflow/proto/inference"
)

// checkEnsembleScheduling checks an ensemble's steps on their own.
// (Stub: refused until ensembles land.)
func checkEnsembleScheduling(cfg *pb.ModelConfig) error {
	if cfg.GetEnsembleScheduling() != nil || cfg.Platform == PlatformEnsemble {
		return fmt.Errorf("%w: ensemble models are not supported yet", ErrInvalidConfig)
	}
	return nil
}
