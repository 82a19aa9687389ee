package sequence

import (
	"fmt"
	"time"

	"github.com/helixflow/helixflow/workers/infer"
)

// reason is why a sequence was released.
type reason int

const (
	reasonEnded reason = iota + 1
	reasonIdle
)

// maxReleased bounds the released ids remembered for error messages.
const maxReleased = 4096

// released remembers the most recently released sequences, so that a
// request that continues one can be told what happened to it.
type released struct {
	reasons map[infer.CorrelationID]reason
	order   []infer.CorrelationID // oldest first; may hold forgotten ids
}

func (r *released) add(id infer.CorrelationID, why reason) {
	if r.reasons == nil {
		r.reasons = make(map[infer.CorrelationID]reason)
	}
	if _, ok := r.reasons[id]; !ok {
		r.order = append(r.order, id)
	}
	r.reasons[id] = why
	for len(r.reasons) > maxReleased || len(r.order) > 2*maxReleased {
		old := r.order[0]
		r.order = r.order[1:]
		if len(r.reasons) > maxReleased {
			delete(r.reasons, old)
		}
	}
}

func (r *released) forget(id infer.CorrelationID) { delete(r.reasons, id) }

// why explains an unknown sequence id.
func (r *released) explain(id infer.CorrelationID, idle time.Duration) string {
	switch r.reasons[id] {
	case reasonEnded:
		return fmt.Sprintf("sequence %s already ended (an earlier request carried the END flag)", id)
	case reasonIdle:
		return fmt.Sprintf("sequence %s was released after it was idle for more than %v (max_sequence_idle_microseconds)", id, idle)
	}
	return fmt.Sprintf("sequence %s is unknown to this worker: it was never started here, or it was lost (idle-expired long ago, or the worker that held it restarted)", id)
}
