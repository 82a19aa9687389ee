package usage

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/oauth"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/webapi"
)

// Members tells a person's role in an organization (*store.Store has it);
// store.ErrNotFound when they are no member.
type Members interface {
	MemberRole(ctx context.Context, orgID, userID string) (string, error)
}

// Authenticator checks a machine caller's credential (check.Service):
// errors wrap check.ErrUnauthenticated (401) or check.ErrUnavailable (503).
type Authenticator interface {
	Authenticate(ctx context.Context, authorization, apiKey string) (*check.Principal, error)
}

// API serves the ledger's reports over HTTP.
type API struct {
	store   *Store
	members Members
	auth    Authenticator
	person  func(ctx context.Context, bearer string) bool
	log     *slog.Logger
	now     func() time.Time
}

// APIConfig configures the reports' handlers. Members is needed by
// OrgHandler, Machines by MachineHandler.
type APIConfig struct {
	Store    *Store
	Members  Members
	Machines Authenticator
	// IsPersonToken reports whether a bearer token (not an API key) is a
	// valid person's token (claim sid): GET /api/v1/usage refuses those,
	// since a person's app client (helixctl's, shared by every person)
	// would show everyone's use of it. nil: none is recognized.
	IsPersonToken func(ctx context.Context, bearer string) bool
	Logger        *slog.Logger
	Now           func() time.Time
}

// NewAPI returns the reports' handlers.
func NewAPI(cfg APIConfig) *API {
	a := &API{store: cfg.Store, members: cfg.Members, auth: cfg.Machines, person: cfg.IsPersonToken, log: cfg.Logger, now: cfg.Now}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a
}

// Mount registers GET /api/v1/usage (machine callers) and, when people is
// not nil (the people's API is on), GET /api/v1/orgs/{org}/usage behind
// people (the session middleware and Require) on the public mux.
func (a *API) Mount(mux *http.ServeMux, people func(http.Handler) http.Handler) {
	routes := []webapi.Route{{Pattern: "GET /api/v1/usage", Handler: http.HandlerFunc(a.ClientUsage)}}
	if people != nil {
		routes = append(routes, webapi.Route{Pattern: "GET /api/v1/orgs/{org}/usage", Handler: people(http.HandlerFunc(a.OrgUsage))})
	}
	webapi.Handle(mux, routes...)
}

// OrgUsage answers GET /api/v1/orgs/{org}/usage: any member of the
// organization (a bearer needs scope account) reads its clients' usage;
// anyone else gets 404, as for every path under an organization.
func (a *API) OrgUsage(w http.ResponseWriter, r *http.Request) {
	p, ok := session.PrincipalFrom(r.Context())
	if !ok {
		webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "sign in first: no live session cookie or bearer token")
		return
	}
	if !p.HasScope(oauth.ScopeAccount) {
		webapi.WriteError(w, http.StatusForbidden, webapi.CodeForbidden, "the token lacks scope "+oauth.ScopeAccount)
		return
	}
	org := r.PathValue("org")
	if _, err := a.members.MemberRole(r.Context(), org, p.UserID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			webapi.WriteError(w, http.StatusNotFound, webapi.CodeNotFound, "organization not found")
			return
		}
		a.unavailable(w, "read membership", err)
		return
	}
	a.serve(w, r, Scope{OrgID: org}, false)
}

// ClientUsage answers GET /api/v1/usage for a machine caller: its own
// client's usage, authenticated as Check authenticates (client access
// token or API key in Authorization: Bearer, or an API key in x-api-key).
func (a *API) ClientUsage(w http.ResponseWriter, r *http.Request) {
	if a.auth == nil {
		webapi.WriteError(w, http.StatusServiceUnavailable, webapi.CodeUnavailable, "machine callers' usage is not configured")
		return
	}
	authz, key := r.Header.Get("Authorization"), r.Header.Get("X-Api-Key")
	if authz == "" && key == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="helixflow"`)
		webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "send a client access token or API key (Authorization: Bearer, or x-api-key)")
		return
	}
	if raw, ok := strings.CutPrefix(authz, "Bearer "); ok && a.person != nil && !strings.HasPrefix(raw, check.APIKeyPrefix) && a.person(r.Context(), raw) {
		webapi.WriteError(w, http.StatusForbidden, webapi.CodeForbidden,
			"a person's token reads usage per organization: GET /api/v1/orgs/{org}/usage; this endpoint is for a client's token or API key")
		return
	}
	p, err := a.auth.Authenticate(r.Context(), authz, key)
	switch {
	case errors.Is(err, check.ErrUnavailable):
		a.unavailable(w, "authenticate", err)
		return
	case err != nil:
		w.Header().Set("WWW-Authenticate", `Bearer realm="helixflow", error="invalid_token"`)
		webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "the access token or API key is not valid")
		return
	}
	a.serve(w, r, Scope{ClientID: p.ClientID}, false)
}

// AdminUsage answers GET /admin/v1/usage: every organization's and
// client's usage, narrowed by org, client and model. It belongs behind
// the admin API's authentication (admin token or a platform admin).
func (a *API) AdminUsage(w http.ResponseWriter, r *http.Request) {
	a.serve(w, r, Scope{Everything: true}, true)
}

func (a *API) serve(w http.ResponseWriter, r *http.Request, scope Scope, withOrg bool) {
	q, err := ParseQuery(r.URL.Query(), a.now(), withOrg)
	if err != nil {
		webapi.WriteError(w, http.StatusBadRequest, webapi.CodeInvalidRequest, err.Error())
		return
	}
	rep, err := a.store.Report(r.Context(), q, scope)
	switch {
	case errors.Is(err, ErrBadQuery):
		webapi.WriteError(w, http.StatusBadRequest, webapi.CodeInvalidRequest, err.Error())
		return
	case err != nil:
		a.unavailable(w, "read usage", err)
		return
	}
	if q.Format == FormatCSV {
		h := w.Header()
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="usage-%s-%s.csv"`, q.From.Format("20060102T15"), q.To.Format("20060102T15")))
		if err := WriteCSV(w, rep); err != nil {
			a.log.Warn("usage: write CSV", "error", err)
		}
		return
	}
	webapi.WriteJSON(w, http.StatusOK, rep)
}

func (a *API) unavailable(w http.ResponseWriter, what string, err error) {
	a.log.Error("usage: "+what, "error", err)
	w.Header().Set("Retry-After", "1")
	webapi.WriteError(w, http.StatusServiceUnavailable, webapi.CodeUnavailable, what+": try again shortly")
}

// CSVHeader is the header line of a CSV report: the JSON rows' members.
var CSVHeader = []string{"start", "client_id", "model", "requests", "inferences", "errors", "throttled",
	"compute_seconds", "latency_p50_ms", "latency_p99_ms"}

// WriteCSV writes rep's rows as CSV with a header line (RFC 4180). An
// empty quantile means no request was timed. A client id or model that
// starts as a spreadsheet formula would is prefixed with ' so that a
// spreadsheet shows it as text.
func WriteCSV(w interface{ Write([]byte) (int, error) }, rep *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for _, r := range rep.Rows {
		if err := cw.Write([]string{
			r.Start.Format(time.RFC3339), cell(r.ClientID), cell(r.Model),
			strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.Inferences, 10), strconv.FormatInt(r.Errors, 10),
			strconv.FormatInt(r.Throttled, 10), strconv.FormatFloat(r.ComputeSeconds, 'f', -1, 64),
			msCell(r.LatencyP50Ms), msCell(r.LatencyP99Ms),
		}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// cell defuses spreadsheet formulas (CSV injection): client ids and
// model names are chosen by callers.
func cell(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r') {
		return "'" + s
	}
	return s
}

func msCell(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'f', 3, 64)
}
