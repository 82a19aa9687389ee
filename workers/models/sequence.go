package models

import (
	"errors"
	"log/slog"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/stats"
)

// newSequenceRunner builds the sequence batcher of a model with
// sequence_batching. (Stub: the sequence batcher lands with workers/sequence.)
func newSequenceRunner(cfg *pb.ModelConfig, n int64, instances []backend.Instance, rec *stats.Recorder, log *slog.Logger) (runner, error) {
	return nil, errors.New("sequence_batching is not implemented yet")
}
