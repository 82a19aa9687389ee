package rollout

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/helixflow/helixflow/internal/rolloutspec"
)

// Results of an evaluation: helix_rollout_evaluations_total's result
// label.
const (
	ResultPass            = "pass"
	ResultFail            = "fail"
	ResultNoData          = "no_data"
	ResultPrometheusError = "prometheus_error"
)

// Events of a rollout: helix_rollout_events_total's event label. The
// controller makes start, advance, hold, rollback and complete; pause,
// resume and abort are the operator's, counted when a poll sees them.
const (
	EventStart    = "start"
	EventAdvance  = "advance"
	EventHold     = "hold"
	EventRollback = "rollback"
	EventComplete = "complete"
	EventPause    = "pause"
	EventResume   = "resume"
	EventAbort    = "abort"
)

// Measurement is what Prometheus says about the canary's clusters over a
// window.
type Measurement struct {
	Requests float64 // answered by the canary's clusters
	Errors   float64 // of those, 5xx (gRPC errors as their HTTP equivalent)
	P99Ms    float64 // NaN without latency samples
}

// started says whether the controller applied r's first step already.
func (r *Rollout) started() bool { return r.Step >= 0 && r.StepStartedAt != nil }

// due says whether r's current step has run its interval at now.
func (r *Rollout) due(now time.Time) bool {
	return r.State == rolloutspec.StateRunning && r.started() && !now.Before(r.StepStartedAt.Add(r.Interval))
}

// begin applies the first step of a running rollout (helix-authz inserts
// it at step -1, weight 0): no evaluation, the canary gets its first
// share.
func begin(r Rollout, now time.Time) (Rollout, []string) {
	if r.Step < 0 {
		r.Step = 0
	}
	return enter(r, now, fmt.Sprintf("started: canary at %d%%", r.Steps[r.Step]), EventStart)
}

// enter makes step r.Step the current one; reaching 100% completes r.
func enter(r Rollout, now time.Time, reason, event string) (Rollout, []string) {
	r.Weight = r.Steps[r.Step]
	r.StepStartedAt = &now
	r.Reason = reason
	events := []string{event}
	if r.Weight == 100 {
		r.State, r.EndedAt = rolloutspec.StateCompleted, &now
		events = append(events, EventComplete)
	}
	return r, events
}

// judge compares m (or the error that kept it from coming) with slo.
// window is the span m covers, for the reason.
func judge(slo rolloutspec.SLO, window time.Duration, m Measurement, err error) (result, reason string) {
	if err != nil {
		return ResultPrometheusError, fmt.Sprintf("Prometheus: %v", err)
	}
	if m.Requests <= 0 {
		return ResultNoData, fmt.Sprintf("no requests reached the canary in the last %v", window)
	}
	var held, broken []string
	if slo.ErrorRatio != nil {
		ratio := m.Errors / m.Requests
		s := fmt.Sprintf("error ratio %s (%.0f of %.0f requests)", percent(ratio), m.Errors, m.Requests)
		if ratio >= *slo.ErrorRatio {
			broken = append(broken, s+" is not below "+percent(*slo.ErrorRatio))
		} else {
			held = append(held, s+" < "+percent(*slo.ErrorRatio))
		}
	}
	if slo.P99Ms != nil {
		switch {
		case math.IsNaN(m.P99Ms):
			return ResultNoData, fmt.Sprintf("no latency samples of the canary in the last %v", window)
		case m.P99Ms >= *slo.P99Ms:
			broken = append(broken, fmt.Sprintf("p99 %s ms is not below %s ms", ms(m.P99Ms), ms(*slo.P99Ms)))
		default:
			held = append(held, fmt.Sprintf("p99 %s ms < %s ms", ms(m.P99Ms), ms(*slo.P99Ms)))
		}
	}
	if len(broken) > 0 {
		return ResultFail, strings.Join(broken, ", ") + fmt.Sprintf(" over %v", window)
	}
	return ResultPass, strings.Join(held, ", ") + fmt.Sprintf(" over %v", window)
}

// conclude applies an evaluation's result to r, which was due.
func conclude(r Rollout, result, reason string, now time.Time) (Rollout, []string) {
	switch result {
	case ResultPass:
		if r.Step+1 >= len(r.Steps) {
			// At 100% already (a row resumed at its last step).
			r.State, r.EndedAt, r.Reason = rolloutspec.StateCompleted, &now, reason+": completed"
			return r, []string{EventComplete}
		}
		from := r.Weight
		r.Step++
		next, events := enter(r, now, "", EventAdvance)
		next.Reason = fmt.Sprintf("%s: canary %d%% → %d%%", reason, from, next.Weight)
		return next, events
	case ResultFail:
		r.State, r.EndedAt, r.Weight = rolloutspec.StateRolledBack, &now, 0
		r.Reason = reason + ": rolled back"
		return r, []string{EventRollback}
	}
	r.Reason = fmt.Sprintf("%s: holding at %d%%", reason, r.Weight)
	return r, []string{EventHold}
}

func percent(f float64) string { return strings.TrimSuffix(fmt.Sprintf("%.4g", f*100), ".") + "%" }

func ms(f float64) string { return fmt.Sprintf("%.4g", f) }
