package repository

import (
	"fmt"

	pb "github.com/helixflow/helixflow/proto/inference"
)

// checkSequenceBatching checks a model's sequence_batching on its own.
// (Stub: refused until the sequence batcher lands.)
func checkSequenceBatching(cfg *pb.ModelConfig) error {
	if cfg.GetSequenceBatching() != nil {
		return fmt.Errorf("%w: sequence_batching is not supported yet", ErrInvalidConfig)
	}
	return nil
}
