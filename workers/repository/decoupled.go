package repository

import (
	"fmt"

	pb "github.com/helixflow/helixflow/proto/inference"
)

// IsDecoupled reports whether cfg sets Triton's
// model_transaction_policy { decoupled: true }: the model answers a request
// with zero or more responses, served by the streaming APIs only.
func IsDecoupled(cfg *pb.ModelConfig) bool {
	return cfg.GetModelTransactionPolicy().GetDecoupled()
}

// checkTransactionPolicy checks model_transaction_policy on its own.
// Whether the backend can serve a decoupled model is checked when its
// instances are made (workers/models).
func checkTransactionPolicy(cfg *pb.ModelConfig) error {
	decoupled := IsDecoupled(cfg)
	switch {
	case cfg.Backend == BackendRepeat && !decoupled:
		return fmt.Errorf("%w: backend %q serves decoupled models only: set model_transaction_policy { decoupled: true }", ErrInvalidConfig, BackendRepeat)
	case decoupled && cfg.Platform == PlatformEnsemble:
		return fmt.Errorf("%w: model_transaction_policy.decoupled is not supported for ensembles", ErrInvalidConfig)
	case decoupled && cfg.GetSequenceBatching() != nil:
		return fmt.Errorf("%w: model_transaction_policy.decoupled is not supported with sequence_batching", ErrInvalidConfig)
	}
	return nil
}
