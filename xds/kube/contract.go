package kube

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/registry"
)

// The contract with the cluster (the Helm chart writes exactly these).
const (
	// ComponentLabel with value WorkerComponent marks a Service as a worker pool.
	ComponentLabel  = "helixflow.io/component"
	WorkerComponent = "worker"
	// ModelsAnnotation on a worker Service lists the models its pods serve,
	// comma separated ("simple,mlp").
	ModelsAnnotation = "helixflow.io/models"
	// SequenceModelsAnnotation on a worker Service lists which of its
	// models use Triton's sequence batching, comma separated, "" for none
	// or "*" for all: only those get the gateway's sequence routing
	// (consistent hashing on the sequence id, the REST body read by
	// helix-authz). Without it every model of the Service gets it: a
	// Kubernetes pool carries no model configs, and a sequence model
	// routed without it would lose its sequences' state between workers,
	// while the routing costs a non-sequence model only resources. The
	// Helm chart always writes it (workers.pools[].sequenceModels).
	SequenceModelsAnnotation = "helixflow.io/sequence-models"
	// PoolLabel on a worker Service names the worker pool of its pods
	// (registry.Worker.Pool, what a traffic policy's variant selects by
	// pool): the chart's workers.pools[].name. Absent: wire.DefaultPool.
	// Versions are not known from Kubernetes, so a variant by version
	// needs workers that register (the registry source).
	PoolLabel = "helixflow.io/pool"
	// GRPCPortName (required) and HTTPPortName (optional) name the
	// Service's ports, which its EndpointSlices carry.
	GRPCPortName = "grpc"
	HTTPPortName = "http"
)

// ErrInvalid marks an object that breaks the contract; it is skipped and
// the rest keeps serving.
var ErrInvalid = errors.New("invalid")

// parseModels reads the models annotation and returns its valid names,
// sorted. An entry the gateway cannot route (wire.CheckModelName) or one
// listed twice is left out and named in the error, and the other entries
// are returned with it: one bad name does not take the pool's other models
// down. Without any valid entry it returns only the error.
func parseModels(annotations map[string]string) ([]string, error) {
	v, ok := annotations[ModelsAnnotation]
	if !ok {
		return nil, fmt.Errorf("%w: annotation %s: missing; want the comma-separated models the pool serves", ErrInvalid, ModelsAnnotation)
	}
	if strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("%w: annotation %s: empty; want the comma-separated models the pool serves", ErrInvalid, ModelsAnnotation)
	}
	parts := strings.Split(v, ",")
	if len(parts) > registry.MaxModelsPerWorker {
		return nil, fmt.Errorf("%w: annotation %s: %d models, at most %d", ErrInvalid, ModelsAnnotation, len(parts), registry.MaxModelsPerWorker)
	}
	names := make([]string, 0, len(parts))
	seen := make(map[string]struct{}, len(parts))
	var bad []error
	for i, p := range parts {
		name := strings.TrimSpace(p)
		if err := wire.CheckModelName(name); err != nil {
			bad = append(bad, fmt.Errorf("%w: annotation %s: entry %d %q left out: %w", ErrInvalid, ModelsAnnotation, i+1, clip(name), err))
			continue
		}
		if _, dup := seen[name]; dup {
			bad = append(bad, fmt.Errorf("%w: annotation %s: entry %d %q: listed twice", ErrInvalid, ModelsAnnotation, i+1, name))
			continue
		}
		seen[name] = struct{}{}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil, errors.Join(bad...)
	}
	slices.Sort(names)
	return names, errors.Join(bad...)
}

// parsePool reads the pool label: wire.DefaultPool when absent or empty,
// an error (the Service is left out: its workers' pool is unknown, and a
// guess would put them in another pool's variant) when not a pool name.
func parsePool(labels map[string]string) (string, error) {
	v := labels[PoolLabel]
	if v == "" {
		return wire.DefaultPool, nil
	}
	if err := wire.CheckPoolName(v); err != nil {
		return "", fmt.Errorf("%w: label %s %q: %w", ErrInvalid, PoolLabel, clip(v), err)
	}
	return v, nil
}

// parseSequenceModels reads the sequence-models annotation against the
// Service's models (parseModels'): the set of those that get sequence
// routing. Without the annotation, or with "*", that is all of them; an
// entry that is not one of models is left out and named in the error.
func parseSequenceModels(annotations map[string]string, models []string) (map[string]bool, error) {
	out := make(map[string]bool, len(models))
	v, ok := annotations[SequenceModelsAnnotation]
	if !ok || strings.TrimSpace(v) == "*" {
		for _, m := range models {
			out[m] = true
		}
		return out, nil
	}
	if strings.TrimSpace(v) == "" {
		return out, nil
	}
	var bad []error
	for i, p := range strings.Split(v, ",") {
		name := strings.TrimSpace(p)
		if !slices.Contains(models, name) {
			bad = append(bad, fmt.Errorf("%w: annotation %s: entry %d %q left out: not one of the Service's models (%s)", ErrInvalid, SequenceModelsAnnotation, i+1, clip(name), ModelsAnnotation))
			continue
		}
		out[name] = true
	}
	return out, errors.Join(bad...)
}

// clip keeps log lines short when an annotation holds junk.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
