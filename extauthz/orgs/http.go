package orgs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/oauth"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/webapi"
)

func (a *API) routes() {
	webapi.Handle(a.mux,
		webapi.Route{Pattern: "GET /api/v1/orgs", Handler: http.HandlerFunc(a.listOrgs)},
		webapi.Route{Pattern: "POST /api/v1/orgs", Handler: http.HandlerFunc(a.createOrg)},
		webapi.Route{Pattern: "GET /api/v1/orgs/{org}", Handler: http.HandlerFunc(a.getOrg)},
		webapi.Route{Pattern: "PATCH /api/v1/orgs/{org}", Handler: http.HandlerFunc(a.updateOrg)},
		webapi.Route{Pattern: "DELETE /api/v1/orgs/{org}", Handler: http.HandlerFunc(a.deleteOrg)},
		webapi.Route{Pattern: "GET /api/v1/orgs/{org}/policy", Handler: http.HandlerFunc(a.getPolicy)},
		webapi.Route{Pattern: "GET /api/v1/orgs/{org}/members", Handler: http.HandlerFunc(a.listMembers)},
		webapi.Route{Pattern: "POST /api/v1/orgs/{org}/members", Handler: http.HandlerFunc(a.addMember)},
		webapi.Route{Pattern: "PATCH /api/v1/orgs/{org}/members/{user}", Handler: http.HandlerFunc(a.updateMember)},
		webapi.Route{Pattern: "DELETE /api/v1/orgs/{org}/members/{user}", Handler: http.HandlerFunc(a.removeMember)},
		webapi.Route{Pattern: "GET /api/v1/orgs/{org}/clients", Handler: http.HandlerFunc(a.listClients)},
		webapi.Route{Pattern: "POST /api/v1/orgs/{org}/clients", Handler: http.HandlerFunc(a.createClient)},
		webapi.Route{Pattern: "GET /api/v1/orgs/{org}/clients/{id}", Handler: http.HandlerFunc(a.getClient)},
		webapi.Route{Pattern: "PATCH /api/v1/orgs/{org}/clients/{id}", Handler: http.HandlerFunc(a.updateClient)},
		webapi.Route{Pattern: "DELETE /api/v1/orgs/{org}/clients/{id}", Handler: http.HandlerFunc(a.deleteClient)},
		webapi.Route{Pattern: "POST /api/v1/orgs/{org}/clients/{id}/rotate-secret", Handler: http.HandlerFunc(a.rotateSecret)},
		webapi.Route{Pattern: "GET /api/v1/orgs/{org}/apikeys", Handler: http.HandlerFunc(a.listAPIKeys)},
		webapi.Route{Pattern: "POST /api/v1/orgs/{org}/apikeys", Handler: http.HandlerFunc(a.createAPIKey)},
		webapi.Route{Pattern: "POST /api/v1/orgs/{org}/apikeys/{id}/rotate", Handler: http.HandlerFunc(a.rotateAPIKey)},
		webapi.Route{Pattern: "DELETE /api/v1/orgs/{org}/apikeys/{id}", Handler: http.HandlerFunc(a.revokeAPIKey)},
	)
	a.mux.HandleFunc("/api/v1/orgs/", func(w http.ResponseWriter, r *http.Request) {
		webapi.WriteError(w, http.StatusNotFound, webapi.CodeNotFound, "no such endpoint")
	})
}

// call is one authenticated request: who, and (under /orgs/{org}) their
// role there.
type call struct {
	r      *http.Request
	userID string
	orgID  string
	role   string
	api    *API
}

// event returns the call's audit event.
func (c *call) event(action, target, result string, detail map[string]string) audit.Event {
	if c.orgID != "" {
		if detail == nil {
			detail = map[string]string{}
		}
		detail["org"] = "org:" + c.orgID
	}
	return audit.Event{
		Actor: "user:" + c.userID, Action: action, Target: target, Result: result,
		Source: c.api.source(c.r), UserAgent: c.r.UserAgent(), Detail: detail,
	}
}

// record appends an event; a failure is logged (the recorder counts it)
// and never fails the action, which is done.
func (c *call) record(action, target, result string, detail map[string]string) {
	e := c.event(action, target, result, detail)
	if err := c.api.cfg.Audit.Record(c.r.Context(), e); err != nil {
		c.api.cfg.Logger.Error("audit", "action", action, "error", err)
	}
}

// person starts a call outside an organization: the principal must be
// there, and a bearer must carry scope "account".
func (a *API) person(w http.ResponseWriter, r *http.Request) (*call, bool) {
	p, ok := session.PrincipalFrom(r.Context())
	if !ok {
		webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "sign in first: no live session cookie or bearer token")
		return nil, false
	}
	if !p.HasScope(oauth.ScopeAccount) {
		webapi.WriteError(w, http.StatusForbidden, webapi.CodeForbidden, "the token lacks scope "+oauth.ScopeAccount)
		return nil, false
	}
	return &call{r: r, userID: p.UserID, api: a}, true
}

// member starts a call in the path's organization, allowed from role
// want. A caller who is no member gets 404 (the organization's existence
// is not revealed); one below want gets 403, recorded as denied.
func (a *API) member(w http.ResponseWriter, r *http.Request, action, want string) (*call, bool) {
	c, ok := a.person(w, r)
	if !ok {
		return nil, false
	}
	c.orgID = r.PathValue("org")
	role, err := a.cfg.Store.MemberRole(r.Context(), c.orgID, c.userID)
	if errors.Is(err, store.ErrNotFound) {
		webapi.WriteError(w, http.StatusNotFound, webapi.CodeNotFound, "organization not found")
		return nil, false
	}
	if err != nil {
		a.storeError(w, "read membership", err)
		return nil, false
	}
	c.role = role
	if !atLeast(role, want) {
		c.record(action, "org:"+c.orgID, audit.ResultDenied, map[string]string{"role": role, "needs": want})
		webapi.WriteError(w, http.StatusForbidden, webapi.CodeForbidden,
			fmt.Sprintf("your role in this organization is %s; this needs %s or above", role, want))
		return nil, false
	}
	return c, true
}

// storeError answers a store failure. Callers map ErrLimit, ErrLastOwner
// and the like themselves where they mean something else.
func (a *API) storeError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		webapi.WriteError(w, http.StatusNotFound, webapi.CodeNotFound, what+": not found")
	case errors.Is(err, store.ErrConflict):
		webapi.WriteError(w, http.StatusConflict, webapi.CodeConflict, what+": already exists")
	case errors.Is(err, store.ErrLimit):
		webapi.WriteError(w, http.StatusConflict, webapi.CodeConflict, what+": the organization's policy allows no more ("+limitDetail(err)+")")
	case errors.Is(err, store.ErrLastOwner):
		webapi.WriteError(w, http.StatusConflict, webapi.CodeConflict, what+": an organization keeps at least one owner")
	case errors.Is(err, store.ErrRevoked):
		webapi.WriteError(w, http.StatusConflict, webapi.CodeConflict, what+": the API key is revoked")
	case errors.Is(err, store.ErrRotated):
		webapi.WriteError(w, http.StatusConflict, webapi.CodeConflict, what+": the API key was rotated already; rotate its successor")
	case errors.Is(err, store.ErrInvalid):
		webapi.WriteError(w, http.StatusBadRequest, webapi.CodeInvalidRequest, what+": a value the server cannot store (NUL byte or invalid UTF-8)")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		a.cfg.Logger.Error(what, "error", err)
		webapi.WriteError(w, http.StatusServiceUnavailable, webapi.CodeUnavailable, what+": database unavailable")
	default:
		a.cfg.Logger.Error(what, "error", err)
		webapi.WriteError(w, http.StatusInternalServerError, "server_error", what+": internal error")
	}
}

// limitDetail is the "n of max" part of an ErrLimit.
func limitDetail(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, store.ErrLimit.Error()+": "); i >= 0 {
		return msg[i+len(store.ErrLimit.Error())+2:]
	}
	return "limit reached"
}

func badRequest(w http.ResponseWriter, err error) {
	webapi.WriteError(w, http.StatusBadRequest, webapi.CodeInvalidRequest, err.Error())
}
