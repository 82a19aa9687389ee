package models

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/repository"
)

// readConfig reads the model's config.pbtxt, or the JSON config a load
// request supplied in its place (Triton's "config" load parameter).
func readConfig(dir string, opts infer.LoadOptions) (*pb.ModelConfig, error) {
	if opts.ConfigJSON == "" {
		return repository.ReadConfig(dir)
	}
	if len(opts.ConfigJSON) > repository.MaxConfigBytes {
		return nil, fmt.Errorf("%w: config parameter is over %d bytes", repository.ErrInvalidConfig, repository.MaxConfigBytes)
	}
	cfg := &pb.ModelConfig{}
	if err := protojson.Unmarshal([]byte(opts.ConfigJSON), cfg); err != nil {
		return nil, fmt.Errorf("%w: config parameter: %v", repository.ErrInvalidConfig, err)
	}
	return cfg, nil
}
