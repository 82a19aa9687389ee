package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/extauthz/rollouts"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/rolloutspec"
	"github.com/helixflow/helixflow/internal/wire"
)

// RolloutStore is the rollouts table (rollouts.Store).
type RolloutStore interface {
	Create(ctx context.Context, r *rollouts.Rollout) error
	Get(ctx context.Context, id int64) (*rollouts.Rollout, error)
	List(ctx context.Context, model string, limit int) ([]rollouts.Rollout, error)
	Pause(ctx context.Context, id int64, reason string) (*rollouts.Rollout, error)
	Resume(ctx context.Context, id int64, reason string) (*rollouts.Rollout, error)
	Abort(ctx context.Context, id int64, reason string) (*rollouts.Rollout, error)
	Release(ctx context.Context, model, reason string) (*rollouts.Rollout, error)
}

// Models is the model catalogue a rollout is checked against: what
// helix-xds serves now (catalog.Client).
type Models interface {
	Models(ctx context.Context) ([]catalog.Model, error)
}

// DefaultRolloutList is GET /admin/v1/rollouts's limit when none is given.
const DefaultRolloutList = 100

// RolloutView is a rollout as the admin API shows it.
type RolloutView struct {
	ID            int64           `json:"id"`
	Model         string          `json:"model"`
	FromVersion   string          `json:"from_version"`
	FromPool      string          `json:"from_pool"`
	ToVersion     string          `json:"to_version"`
	ToPool        string          `json:"to_pool"`
	Steps         []int           `json:"steps"`
	Interval      string          `json:"interval"`
	SLO           rolloutspec.SLO `json:"slo"`
	Sticky        bool            `json:"sticky"`
	State         string          `json:"state"`
	Step          int             `json:"step"`
	Weight        int             `json:"weight"`
	Reason        string          `json:"reason"`
	CreatedBy     string          `json:"created_by"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	StepStartedAt *time.Time      `json:"step_started_at,omitempty"`
	EndedAt       *time.Time      `json:"ended_at,omitempty"`
}

// ViewRollout returns r as the admin API shows it.
func ViewRollout(r *rollouts.Rollout) RolloutView {
	steps := r.Steps
	if steps == nil {
		steps = []int{}
	}
	return RolloutView{
		ID: r.ID, Model: r.Model, FromVersion: r.FromVersion, FromPool: r.FromPool, ToVersion: r.ToVersion, ToPool: r.ToPool,
		Steps: steps, Interval: r.Interval.String(), SLO: r.SLO, Sticky: r.Sticky, State: r.State, Step: r.Step, Weight: r.Weight,
		Reason: r.Reason, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		StepStartedAt: r.StepStartedAt, EndedAt: r.EndedAt,
	}
}

// rolloutRoutes are the rollout requests (docs/rollouts.md). The admin API
// writes only the operator's transitions; helix-xds's controller applies
// the steps and writes the rest.
func (a *api) rolloutRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /admin/v1/rollouts", a.startRollout)
	mux.HandleFunc("GET /admin/v1/rollouts", a.listRollouts)
	mux.HandleFunc("GET /admin/v1/rollouts/{id}", a.getRollout)
	mux.HandleFunc("POST /admin/v1/rollouts/{id}/pause", a.rolloutTransition("pause", RolloutStore.Pause))
	mux.HandleFunc("POST /admin/v1/rollouts/{id}/resume", a.rolloutTransition("resume", RolloutStore.Resume))
	mux.HandleFunc("POST /admin/v1/rollouts/{id}/abort", a.rolloutTransition("abort", RolloutStore.Abort))
	mux.HandleFunc("POST /admin/v1/models/{model}/rollout/release", a.releaseRollout)
}

func (a *api) rolloutStore(w http.ResponseWriter) bool {
	if a.cfg.Rollouts == nil {
		writeError(w, http.StatusNotImplemented, "rollouts are not available on this server")
		return false
	}
	return true
}

// actorName is who a rollout row names: the actor's reference
// ("admin-token" or "user:<uuid>"), never an operator's name, which is
// personal and lives only in the audit trail, where erasure and retention
// reach it (extauthz/gdpr).
func actorName(r *http.Request) string {
	actor, _ := ActorFrom(r.Context())
	return actor.Ref
}

func rolloutDetail(ro *rollouts.Rollout) map[string]string {
	return map[string]string{
		"model": ro.Model, "from_version": ro.FromVersion, "from_pool": ro.FromPool, "to_version": ro.ToVersion, "to_pool": ro.ToPool,
		"state": ro.State, "weight": strconv.Itoa(ro.Weight),
	}
}

func (a *api) startRollout(w http.ResponseWriter, r *http.Request) {
	if !a.rolloutStore(w) {
		return
	}
	var req rollouts.Request
	if !decode(w, r, &req) {
		return
	}
	// The shape first: a bad request is answered without asking helix-xds.
	if err := wire.CheckModelName(req.Model); err != nil {
		writeError(w, http.StatusBadRequest, "model: "+err.Error())
		return
	}
	if a.cfg.Models == nil {
		writeError(w, http.StatusNotImplemented, "rollouts need helix-xds's model catalogue to check the model is served (helix-authz --xds-address)")
		return
	}
	models, err := a.cfg.Models.Models(r.Context())
	if err != nil {
		a.cfg.Logger.Error("read the model catalogue", "error", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "the model catalogue (helix-xds) cannot be read now, so the model cannot be checked; try again shortly")
		return
	}
	var served rollouts.Served
	for _, m := range models {
		if m.Name == req.Model {
			served = rollouts.Served{Found: true, Versions: m.Versions}
		}
	}
	ro, err := req.Check(served, actorName(r))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := a.cfg.Rollouts.Create(r.Context(), ro); err != nil {
		// No id yet: the model is the target.
		a.audit(r, "rollout.start", "model:"+ro.Model, audit.ResultFailure, rolloutDetail(ro))
		a.rolloutError(w, "start rollout", err)
		return
	}
	detail := rolloutDetail(ro)
	steps := make([]string, len(ro.Steps))
	for i, s := range ro.Steps {
		steps[i] = strconv.Itoa(s)
	}
	detail["steps"], detail["interval"], detail["slo"] = strings.Join(steps, ","), ro.Interval.String(), ro.SLO.String()
	a.audit(r, "rollout.start", rolloutTarget(ro.ID), audit.ResultSuccess, detail)
	a.cfg.Logger.Info("rollout started", "rollout", ro.ID, "model", ro.Model, "to_version", ro.ToVersion, "to_pool", ro.ToPool)
	writeJSON(w, http.StatusCreated, ViewRollout(ro))
}

func (a *api) listRollouts(w http.ResponseWriter, r *http.Request) {
	if !a.rolloutStore(w) {
		return
	}
	q := r.URL.Query()
	model := q.Get("model")
	if model != "" {
		if err := wire.CheckModelName(model); err != nil {
			writeError(w, http.StatusBadRequest, "model: "+err.Error())
			return
		}
	}
	limit := DefaultRolloutList
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > rollouts.MaxList {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: %q is not a whole number in 1..%d", v, rollouts.MaxList))
			return
		}
		limit = n
	}
	rs, err := a.cfg.Rollouts.List(r.Context(), model, limit)
	if err != nil {
		a.rolloutError(w, "list rollouts", err)
		return
	}
	out := make([]RolloutView, 0, len(rs))
	for i := range rs {
		out = append(out, ViewRollout(&rs[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// rolloutID reads the {id} path parameter; when it is not one, it has
// answered.
func rolloutID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	v := r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("id: %q is not a rollout id (a positive whole number)", v))
		return 0, false
	}
	return id, true
}

func (a *api) getRollout(w http.ResponseWriter, r *http.Request) {
	if !a.rolloutStore(w) {
		return
	}
	id, ok := rolloutID(w, r)
	if !ok {
		return
	}
	ro, err := a.cfg.Rollouts.Get(r.Context(), id)
	if err != nil {
		a.rolloutError(w, "get rollout", err)
		return
	}
	writeJSON(w, http.StatusOK, ViewRollout(ro))
}

// rolloutTransition serves pause, resume and abort of rollout {id}.
func (a *api) rolloutTransition(action string, change func(RolloutStore, context.Context, int64, string) (*rollouts.Rollout, error)) http.HandlerFunc {
	past := map[string]string{"pause": "paused", "resume": "resumed", "abort": "aborted"}[action]
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.rolloutStore(w) {
			return
		}
		id, ok := rolloutID(w, r)
		if !ok {
			return
		}
		target := rolloutTarget(id)
		ro, err := change(a.cfg.Rollouts, r.Context(), id, past+" by "+actorName(r))
		if err != nil {
			a.audit(r, "rollout."+action, target, audit.ResultFailure, nil)
			a.rolloutError(w, action+" rollout", err)
			return
		}
		a.audit(r, "rollout."+action, target, audit.ResultSuccess, rolloutDetail(ro))
		a.cfg.Logger.Info("rollout "+past, "rollout", ro.ID, "model", ro.Model)
		writeJSON(w, http.StatusOK, ViewRollout(ro))
	}
}

func (a *api) releaseRollout(w http.ResponseWriter, r *http.Request) {
	if !a.rolloutStore(w) {
		return
	}
	model := r.PathValue("model")
	if err := wire.CheckModelName(model); err != nil {
		writeError(w, http.StatusBadRequest, "model: "+err.Error())
		return
	}
	ro, err := a.cfg.Rollouts.Release(r.Context(), model, "released by "+actorName(r))
	if err != nil {
		a.audit(r, "rollout.release", "model:"+model, audit.ResultFailure, nil)
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("model %q has no rollout to release (none, or its latest is released already)", model))
			return
		}
		a.rolloutError(w, "release rollout of model "+model, err)
		return
	}
	a.audit(r, "rollout.release", rolloutTarget(ro.ID), audit.ResultSuccess, rolloutDetail(ro))
	a.cfg.Logger.Info("rollout released", "rollout", ro.ID, "model", ro.Model)
	writeJSON(w, http.StatusOK, ViewRollout(ro))
}

// rolloutTarget is a rollout's audit target. Events name the model in
// their detail; a failed start or release, which has no rollout, targets
// "model:<name>".
func rolloutTarget(id int64) string { return "rollout:" + strconv.FormatInt(id, 10) }

// rolloutError answers a store error: a conflict says which rollout and
// state stand in the way.
func (a *api) rolloutError(w http.ResponseWriter, what string, err error) {
	var (
		inProgress *rollouts.InProgressError
		state      *rollouts.StateError
	)
	switch {
	case errors.As(err, &inProgress):
		writeError(w, http.StatusConflict, what+": "+inProgress.Error())
	case errors.As(err, &state):
		writeError(w, http.StatusConflict, what+": "+state.Error())
	default:
		a.storeError(w, what, err)
	}
}
