package config

import (
	"fmt"
	"maps"
	"slices"

	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/wire"
)

// WorkerIdentity is what one worker identity may advertise when it
// registers with helix-xds (Config.WorkerIdentities).
type WorkerIdentity struct {
	// Models it may advertise, by name; empty: none.
	Models []string `yaml:"models"`
}

// WorkerModels is worker_identities as the registry takes it
// (registry.SetModels): identity -> models. An identity not listed may
// advertise any model.
func (c *Config) WorkerModels() map[string][]string {
	out := make(map[string][]string, len(c.WorkerIdentities))
	for id, w := range c.WorkerIdentities {
		out[id] = slices.Clone(w.Models)
	}
	return out
}

// validateWorkerIdentities checks worker_identities' keys (worker SPIFFE
// IDs) and model names, in a stable order.
func (c *Config) validateWorkerIdentities(add func(field, format string, args ...any)) {
	for _, id := range slices.Sorted(maps.Keys(c.WorkerIdentities)) {
		field := "worker_identities." + id
		if err := identity.ParseWorker(id); err != nil {
			add(field, "%v", err)
			continue
		}
		for i, m := range c.WorkerIdentities[id].Models {
			if err := wire.CheckModelName(m); err != nil {
				add(fmt.Sprintf("%s.models[%d]", field, i), "%q: %v", m, err)
			}
		}
	}
}
