package registration

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	pb "github.com/helixflow/helixflow/proto/inference"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/workers/httpapi"
	"github.com/helixflow/helixflow/workers/infer"
)

// Bounds on the model descriptions a registration carries (helix-xds
// accepts requests up to 4 MiB; names and versions take the rest).
const (
	// MaxConfigJSONBytes: a larger config is sent empty (the proto's rule).
	MaxConfigJSONBytes = 64 << 10
	// maxInfoBytes bounds all of a request's ModelInfo together: over it,
	// models (in name order) lose their config_json, then their info.
	maxInfoBytes = 2 << 20
)

// Describer is the part of infer.Service that describes a model.
type Describer interface {
	ModelMetadata(ctx context.Context, model, version string) (*infer.ModelMetadata, error)
	ModelConfig(ctx context.Context, model, version string) (*pb.ModelConfig, error)
}

// InfoFrom returns a Config.Info that describes a model's latest version
// as the worker's own KServe v2 endpoints do: platform and tensors as the
// model metadata (without the batch dimension), max_batch_size and
// config_json as GET /v2/models/{m}/config, and sequence_batching when the
// config has it (the gateway then keeps each sequence on one worker).
func InfoFrom(d Describer) func(context.Context, string) (*registryv1.ModelInfo, error) {
	return func(ctx context.Context, name string) (*registryv1.ModelInfo, error) {
		md, err := d.ModelMetadata(ctx, name, "")
		if err != nil {
			return nil, fmt.Errorf("model %q metadata: %w", name, err)
		}
		cfg, err := d.ModelConfig(ctx, name, "")
		if err != nil {
			return nil, fmt.Errorf("model %q config: %w", name, err)
		}
		info := &registryv1.ModelInfo{
			Platform: md.Platform, MaxBatchSize: cfg.GetMaxBatchSize(),
			SequenceBatching: cfg.GetSequenceBatching() != nil,
		}
		if info.Platform == "" {
			info.Platform = cfg.GetBackend()
		}
		tensors := func(in []infer.TensorMetadata) []*registryv1.TensorInfo {
			out := make([]*registryv1.TensorInfo, len(in))
			for i, t := range in {
				shape := t.Shape
				if info.MaxBatchSize > 0 && len(shape) > 0 {
					shape = shape[1:] // the metadata's leading -1 is the batch
				}
				out[i] = &registryv1.TensorInfo{Name: t.Name, Datatype: string(t.DataType), Shape: slices.Clone(shape)}
			}
			return out
		}
		info.Inputs, info.Outputs = tensors(md.Inputs), tensors(md.Outputs)
		b, err := httpapi.ConfigJSON(cfg)
		if err != nil {
			return nil, fmt.Errorf("model %q config: %w", name, err)
		}
		if len(b) <= MaxConfigJSONBytes {
			info.ConfigJson = string(b)
		}
		return info, nil
	}
}

// boundInfos keeps the models' infos within maxInfoBytes together, leaving
// out config_json first, then whole infos, from the last model back; it
// reports whether it left anything out. sequence_batching is never left
// out (the gateway routes by it): a sequence model's info shrinks to
// platform, max_batch_size and the flag instead. The infos may be the
// cache's: they are replaced, never modified.
func boundInfos(models []Model, limit int) bool {
	total := 0
	for _, m := range models {
		total += proto.Size(m.Info)
	}
	if total <= limit {
		return false
	}
	for i := len(models) - 1; i >= 0 && total > limit; i-- {
		in := models[i].Info
		if in == nil || in.ConfigJson == "" {
			continue
		}
		slim := &registryv1.ModelInfo{Platform: in.Platform, MaxBatchSize: in.MaxBatchSize, Inputs: in.Inputs, Outputs: in.Outputs, SequenceBatching: in.SequenceBatching}
		total += proto.Size(slim) - proto.Size(in)
		models[i].Info = slim
	}
	for i := len(models) - 1; i >= 0 && total > limit; i-- {
		in := models[i].Info
		if in == nil || in.SequenceBatching && len(in.Inputs)+len(in.Outputs) == 0 {
			continue
		}
		total -= proto.Size(in)
		models[i].Info = nil
		if in.SequenceBatching {
			models[i].Info = &registryv1.ModelInfo{Platform: in.Platform, MaxBatchSize: in.MaxBatchSize, SequenceBatching: true}
			total += proto.Size(models[i].Info)
		}
	}
	return true
}
