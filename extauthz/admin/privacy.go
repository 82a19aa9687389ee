package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/gdpr"
)

// AuditTrail is the audit trail the admin API reads (audit.Store).
type AuditTrail interface {
	List(ctx context.Context, f audit.Filter) ([]audit.Row, error)
	Verify(ctx context.Context) (*audit.Verification, error)
	Export(ctx context.Context, w io.Writer, f audit.Filter) (int64, error)
}

// PersonalData exports and erases a person (gdpr.Service).
type PersonalData interface {
	Export(ctx context.Context, userID string) ([]byte, error)
	Erasure(ctx context.Context, userID string, by audit.Event) (*gdpr.Erasure, error)
}

// privacyRoutes are the audit trail's and the GDPR endpoints. Reading the
// trail or a person's data is itself recorded: both hold personal data.
func (a *api) privacyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/v1/audit", a.listAudit)
	mux.HandleFunc("GET /admin/v1/audit/verify", a.verifyAudit)
	mux.HandleFunc("GET /admin/v1/audit/export", a.exportAudit)
	mux.HandleFunc("GET /admin/v1/users/{id}/export", a.exportUser)
	mux.HandleFunc("POST /admin/v1/users/{id}/erase", a.eraseUser)
}

// auditFilter reads the query's filters: actor, target, action, since and
// until (RFC 3339), limit and before (a seq, for the next page).
func auditFilter(r *http.Request) (audit.Filter, error) {
	q := r.URL.Query()
	f := audit.Filter{Actor: q.Get("actor"), Target: q.Get("target"), Action: q.Get("action")}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, fmt.Errorf("%s: %q is not an RFC 3339 time, e.g. 2026-01-02T15:04:05Z", p.name, v)
			}
			*p.t = t
		}
	}
	for _, p := range []struct {
		name string
		set  func(int64)
	}{{"limit", func(v int64) { f.Limit = int(v) }}, {"before", func(v int64) { f.Before = v }}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return f, fmt.Errorf("%s: %q is not a positive integer", p.name, v)
			}
			p.set(n)
		}
	}
	if f.Limit > audit.MaxListLimit {
		return f, fmt.Errorf("limit: at most %d", audit.MaxListLimit)
	}
	return f, nil
}

func (a *api) trail(w http.ResponseWriter) bool {
	if a.cfg.Trail == nil {
		writeError(w, http.StatusNotImplemented, "the audit trail is not available on this server")
		return false
	}
	return true
}

func (a *api) listAudit(w http.ResponseWriter, r *http.Request) {
	if !a.trail(w) {
		return
	}
	f, err := auditFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rows, err := a.cfg.Trail.List(r.Context(), f)
	if err != nil {
		a.privacyError(w, "list audit rows", err)
		return
	}
	a.audit(r, "audit.list", "", audit.ResultSuccess, map[string]string{"rows": strconv.Itoa(len(rows))})
	writeJSON(w, http.StatusOK, rows)
}

func (a *api) verifyAudit(w http.ResponseWriter, r *http.Request) {
	if !a.trail(w) {
		return
	}
	v, err := a.cfg.Trail.Verify(r.Context())
	if err != nil {
		a.privacyError(w, "verify the audit trail", err)
		return
	}
	detail := map[string]string{"ok": strconv.FormatBool(v.OK), "rows": strconv.FormatInt(v.Rows, 10)}
	if !v.OK {
		detail["first_bad_seq"] = strconv.FormatInt(v.FirstBadSeq, 10)
		a.cfg.Logger.Error("audit trail does not verify", "first_bad_seq", v.FirstBadSeq, "reason", v.Reason)
	}
	a.audit(r, "audit.verify", "", audit.ResultSuccess, detail)
	writeJSON(w, http.StatusOK, v)
}

// exportAudit streams the rows as JSON Lines, oldest first. A failure
// after the first byte cannot change the status: the connection is cut,
// so the caller sees a broken transfer, never a short export that looks
// whole.
func (a *api) exportAudit(w http.ResponseWriter, r *http.Request) {
	if !a.trail(w) {
		return
	}
	f, err := auditFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	f.Limit = 0
	a.audit(r, "audit.export", "", audit.ResultSuccess, nil)
	w.Header().Set("Content-Type", "application/jsonl")
	cw := &countingWriter{w: w}
	if _, err := a.cfg.Trail.Export(r.Context(), cw, f); err != nil {
		if cw.n == 0 {
			w.Header().Del("Content-Type")
			a.privacyError(w, "export audit rows", err)
			return
		}
		a.cfg.Logger.Error("audit export cut short", "error", err)
		panic(http.ErrAbortHandler)
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (a *api) personal(w http.ResponseWriter) bool {
	if a.cfg.PersonalData == nil {
		writeError(w, http.StatusNotImplemented, "export and erasure are not available on this server")
		return false
	}
	return true
}

func (a *api) exportUser(w http.ResponseWriter, r *http.Request) {
	if !a.personal(w) {
		return
	}
	id := r.PathValue("id")
	b, err := a.cfg.PersonalData.Export(r.Context(), id)
	if err != nil {
		a.audit(r, "user.export", gdpr.UserRef(id), audit.ResultFailure, nil)
		a.privacyError(w, "export user", err)
		return
	}
	a.audit(r, "user.export", gdpr.UserRef(id), audit.ResultSuccess, nil)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="helixflow-user-`+id+`.json"`)
	_, _ = w.Write(b)
}

// eraseUser erases a person; the erasure records itself (with this
// actor) in its own transaction, so only a failure is recorded here.
func (a *api) eraseUser(w http.ResponseWriter, r *http.Request) {
	if !a.personal(w) {
		return
	}
	id := r.PathValue("id")
	actor, _ := ActorFrom(r.Context())
	e, err := a.cfg.PersonalData.Erasure(r.Context(), id, actor.Event("user.erase", gdpr.UserRef(id), audit.ResultSuccess, nil))
	if err != nil {
		a.audit(r, "user.erase", gdpr.UserRef(id), audit.ResultFailure, nil)
		a.privacyError(w, "erase user", err)
		return
	}
	a.cfg.Logger.Info("user erased", "user", id, "audit_seq", e.AuditSeq)
	writeJSON(w, http.StatusOK, e)
}

func (a *api) privacyError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, gdpr.ErrNotFound):
		writeError(w, http.StatusNotFound, what+": no such user")
	case errors.Is(err, audit.ErrInvalidFilter):
		writeError(w, http.StatusBadRequest, what+": "+err.Error())
	case errors.Is(err, context.Canceled):
		// The caller left.
	default:
		a.internal(w, what, err)
	}
}
