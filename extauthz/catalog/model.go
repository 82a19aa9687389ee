// Package catalog is helix-authz's side of the model catalogue: a client
// of helix-xds's Catalog service (proto/catalog/v1) over mTLS, whose answer
// it keeps for a short while (CacheTTL) and fetches once for any number of
// concurrent callers; the filter that leaves each caller the models its
// credentials reach; and the JSON API GET /api/v1/models and
// /api/v1/models/{model} on the public port.
//
// helix-xds is the source because it is what the gateway serves: a model
// is listed when a worker has it loaded, whatever the database says. The
// unfiltered list is for helix-authz alone (identity.CatalogReaders); this
// package is the one place that narrows it.
package catalog

import (
	"encoding/json"

	catalogv1 "github.com/helixflow/helixflow/proto/catalog/v1"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
)

// Model is one model of the catalogue as the JSON API answers it.
type Model struct {
	Name string `json:"name"`
	// Versions served by at least one ready worker, sorted numerically.
	Versions []string `json:"versions"`
	// Ready: at least one worker that has the model loaded is ready.
	Ready        bool   `json:"ready"`
	Workers      uint32 `json:"workers"`
	ReadyWorkers uint32 `json:"ready_workers"`
	// Platform, MaxBatchSize, Inputs and Outputs as a worker reported
	// them; empty where the source carries none (Kubernetes EndpointSlices).
	Platform     string   `json:"platform"`
	MaxBatchSize int32    `json:"max_batch_size"`
	Inputs       []Tensor `json:"inputs"`
	Outputs      []Tensor `json:"outputs"`
	// Config is the worker's GET /v2/models/{m}/config answer (Triton's
	// ModelConfig as JSON); null when the worker sent none or it was not a
	// JSON object.
	Config json.RawMessage `json:"config"`
}

// Tensor is one input or output; Shape leaves out the batch dimension and
// has -1 for a variable one.
type Tensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// fromProto converts helix-xds's answer; nothing of it is trusted to be
// well formed beyond its types (the JSON API must stay valid JSON).
func fromProto(in []*catalogv1.CatalogModel) []Model {
	out := make([]Model, 0, len(in))
	for _, m := range in {
		if m.GetName() == "" {
			continue
		}
		info := m.GetInfo()
		out = append(out, Model{
			Name:         m.GetName(),
			Versions:     nonNil(m.GetVersions()),
			Ready:        m.GetReadyWorkers() > 0,
			Workers:      m.GetWorkers(),
			ReadyWorkers: m.GetReadyWorkers(),
			Platform:     info.GetPlatform(),
			MaxBatchSize: info.GetMaxBatchSize(),
			Inputs:       tensors(info.GetInputs()),
			Outputs:      tensors(info.GetOutputs()),
			Config:       configJSON(info.GetConfigJson()),
		})
	}
	return out
}

func tensors(in []*registryv1.TensorInfo) []Tensor {
	out := make([]Tensor, 0, len(in))
	for _, t := range in {
		out = append(out, Tensor{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: nonNil(t.GetShape())})
	}
	return out
}

// configJSON is raw when it is one JSON object, else nil (null): a
// worker's bad config must not break every caller's answer.
func configJSON(raw string) json.RawMessage {
	if raw == "" || !json.Valid([]byte(raw)) {
		return nil
	}
	var probe map[string]json.RawMessage
	if json.Unmarshal([]byte(raw), &probe) != nil {
		return nil
	}
	return json.RawMessage(raw)
}

// nonNil answers [] rather than null in JSON.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
