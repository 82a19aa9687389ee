package infer

import (
	"time"

	"github.com/helixflow/helixflow/internal/usage"
)

// Usage is what one request used, for the usage ledger. Service.Infer
// fills Request.Usage; a Service that does not leaves it zero.
type Usage struct {
	// Rows is the inference rows answered: the request's batch size (1 for
	// a model that does not batch) when it succeeded, 0 when it failed.
	Rows int
	// Compute is the request's share of its batch's execution time.
	Compute time.Duration
}

// RecordUsage counts one request in agg, as both front ends do:
// client is the request's wire.HeaderClient (the gateway's caller; empty:
// not counted), authorized its wire.HeaderModel values (the gateway's
// model, preferred as the key when there is exactly one), model the model
// the request names, req the decoded request (nil when decoding failed),
// failed whether it was answered with an error, start when the worker
// began serving it. A nil agg counts nothing.
func RecordUsage(agg *usage.Aggregator, client string, authorized []string, model string, req *Request, failed bool, start time.Time) {
	if agg == nil || client == "" {
		return
	}
	if len(authorized) == 1 {
		model = authorized[0]
	}
	var u Usage
	if req != nil {
		u = req.Usage
	}
	if failed {
		u.Rows = 0
	}
	now := time.Now()
	agg.AddRequest(now, client, model, u.Rows, failed, u.Compute, now.Sub(start))
}
