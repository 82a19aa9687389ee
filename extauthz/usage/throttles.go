package usage

import (
	"time"

	counts "github.com/helixflow/helixflow/internal/usage"
)

// Throttles counts the requests Check refused over a plan's limit
// (check.Config.Usage) in helix-authz's own Aggregator, which its reporter
// flushes into the ledger with the store as Sink. Safe for concurrent use;
// a request without a model (ModelStreamInfer, server metadata) or with a
// model the ledger cannot hold is not counted.
type Throttles struct {
	Aggregator *counts.Aggregator
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Throttled counts one refused request of client on model.
func (t Throttles) Throttled(client, model string) {
	if model == "" || len(model) > MaxModelLen {
		return
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	t.Aggregator.AddThrottled(now(), client, model)
}
