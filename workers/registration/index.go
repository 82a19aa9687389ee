package registration

import (
	"context"
	"fmt"

	"github.com/helixflow/helixflow/workers/infer"
)

// Indexer is the part of infer.Service that lists the repository.
type Indexer interface {
	RepositoryIndex(ctx context.Context, readyOnly bool) ([]infer.IndexEntry, error)
}

// ModelsFrom returns a Config.Models that reads the ready versions of the
// worker's repository index.
func ModelsFrom(idx Indexer) func(context.Context) ([]Model, error) {
	return func(ctx context.Context) ([]Model, error) {
		entries, err := idx.RepositoryIndex(ctx, true)
		if err != nil {
			return nil, fmt.Errorf("repository index: %w", err)
		}
		return fromIndex(entries), nil
	}
}

// fromIndex groups ready index rows by model name.
func fromIndex(entries []infer.IndexEntry) []Model {
	var out []Model
	pos := make(map[string]int)
	for _, e := range entries {
		if e.State != infer.StateReady || e.Version == "" {
			continue
		}
		i, ok := pos[e.Name]
		if !ok {
			i = len(out)
			pos[e.Name] = i
			out = append(out, Model{Name: e.Name, Ready: true})
		}
		out[i].Versions = append(out[i].Versions, e.Version)
	}
	return out
}
