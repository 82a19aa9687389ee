package httpapi

import pb "github.com/helixflow/helixflow/proto/inference"

// ConfigJSON is a model's configuration exactly as GET
// /v2/models/{m}/config answers it; the worker's registration sends it to
// helix-xds for the model catalogue (workers/registration).
func ConfigJSON(cfg *pb.ModelConfig) ([]byte, error) { return marshalConfigJSON(cfg) }
