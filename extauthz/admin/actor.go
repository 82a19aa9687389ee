package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/sourcelimit"
)

// OperatorHeader names the person behind an admin-token call. The admin
// token is shared by whoever holds it, so every call made with it says who
// acted (helixctl sends --operator, $HELIX_OPERATOR or the OS user@host);
// the name is recorded as the audit event's Operator.
const OperatorHeader = "Helix-Operator"

// ScopeAdmin is the scope a platform admin's access token needs for the
// admin API.
const ScopeAdmin = "helix:admin"

// UserTokenVerifier verifies a person's access token (the OAuth package
// provides one; session.BearerVerifier has the same method).
type UserTokenVerifier interface {
	VerifyUserToken(ctx context.Context, raw string) (userID, sessionID string, scopes []string, err error)
}

// Actor is who makes an admin call: the admin token with the operator it
// named, or a platform admin with their access token.
type Actor struct {
	// Ref is the audit reference: "admin-token" or "user:<uuid>".
	Ref string
	// UserID is set for a platform admin's token.
	UserID string
	// Operator is the Helix-Operator header of an admin-token call.
	Operator  string
	Source    string
	UserAgent string
}

type actorKey struct{}

// portalUserKey marks a request the developer portal makes in process for
// a signed-in person (WithPortalUser).
type portalUserKey struct{}

// PortalOperator is the Operator of audit events of admin calls made
// through the developer portal.
const PortalOperator = "portal"

// WithPortalUser returns ctx for an admin call that the developer portal
// makes in process, calling the handler directly, on behalf of userID,
// the person of the browser session it resolved. The admin API still
// reads users.platform_admin at each call and refuses anyone else, as it
// does for a platform admin's access token. No HTTP request can carry a
// context value, so this opens nothing on the admin listener.
func WithPortalUser(ctx context.Context, userID string) context.Context {
	return context.WithValue(ctx, portalUserKey{}, userID)
}

// ActorFrom returns the actor the admin API authenticated.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// Event returns an audit event of the actor with its operator, source and
// user agent filled in.
func (a Actor) Event(action, target, result string, detail map[string]string) audit.Event {
	return audit.Event{
		Actor: a.Ref, Action: action, Target: target, Result: result,
		Operator: a.Operator, Source: a.Source, UserAgent: a.UserAgent, Detail: detail,
	}
}

// maxOperator bounds the Helix-Operator header (a name, not a document).
const maxOperator = 200

// authenticate finds the actor: the admin token (compared in constant time,
// of its hash, so the length is not revealed either) with a Helix-Operator
// header, or a platform admin's access token with scope helix:admin, the
// users.platform_admin flag read at each request.
func (a *api) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		h := sha256.Sum256([]byte(presented))
		// The audit store cuts and cleans text to fit; nothing to do here.
		actor := Actor{Source: a.source(r), UserAgent: r.UserAgent()}
		portalUser, viaPortal := r.Context().Value(portalUserKey{}).(string)
		switch {
		case viaPortal:
			if a.cfg.People == nil {
				writeError(w, http.StatusNotImplemented, "people and organizations are not available on this server")
				return
			}
			actor.Ref, actor.UserID, actor.Operator = "user:"+portalUser, portalUser, PortalOperator
			if !a.platformAdmin(w, r, actor) {
				return
			}
		case ok && subtle.ConstantTimeCompare(h[:], a.tokenHash[:]) == 1:
			op := strings.TrimSpace(r.Header.Get(OperatorHeader))
			if op == "" {
				writeError(w, http.StatusBadRequest, OperatorHeader+": required with the admin token: name the person acting "+
					"(helixctl --operator or HELIX_OPERATOR)")
				return
			}
			if err := checkName(OperatorHeader, op); err != nil || len(op) > maxOperator {
				writeError(w, http.StatusBadRequest, OperatorHeader+": at most 200 characters, no control characters")
				return
			}
			actor.Ref, actor.Operator = "admin-token", op
		case ok && presented != "" && a.cfg.UserTokens != nil && a.cfg.People != nil:
			userID, _, scopes, err := a.cfg.UserTokens.VerifyUserToken(r.Context(), presented)
			if errors.Is(err, session.ErrUnavailable) {
				// The token could not be judged, which is not "bad token".
				a.cfg.Logger.Error("verify a platform admin's token", "error", err)
				w.Header().Set("Retry-After", "1")
				writeError(w, http.StatusServiceUnavailable, "the access token cannot be checked right now; try again shortly")
				return
			}
			if err != nil {
				a.unauthorized(w)
				return
			}
			actor.Ref, actor.UserID = "user:"+userID, userID
			if !slices.Contains(scopes, ScopeAdmin) {
				a.record(r.Context(), actor.Event("admin.access", "", audit.ResultDenied, map[string]string{"reason": "scope"}))
				writeError(w, http.StatusForbidden, "the token lacks scope "+ScopeAdmin)
				return
			}
			if !a.platformAdmin(w, r, actor) {
				return
			}
		default:
			a.unauthorized(w)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, actor)))
	})
}

// platformAdmin says whether actor's user is a platform admin now (read
// from users at each request); when not, it has answered.
func (a *api) platformAdmin(w http.ResponseWriter, r *http.Request, actor Actor) bool {
	u, err := a.cfg.People.GetUser(r.Context(), actor.UserID)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalid) {
		a.storeError(w, "read user", err)
		return false
	}
	if err != nil || !u.PlatformAdmin || u.ErasedAt != nil {
		a.record(r.Context(), actor.Event("admin.access", "", audit.ResultDenied, map[string]string{"reason": "not a platform admin"}))
		writeError(w, http.StatusForbidden, "not a platform admin")
		return false
	}
	return true
}

func (a *api) unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="helix-authz admin"`)
	writeError(w, http.StatusUnauthorized, "admin token or a platform admin's access token required")
}

func (a *api) source(r *http.Request) string {
	if a.cfg.Source != nil {
		return a.cfg.Source(r)
	}
	return sourcelimit.Sources{}.String(r) // the peer: no proxy is trusted
}

// record appends e to the audit trail; a failure is logged (the recorder
// counts it) and never fails the action, which is done.
func (a *api) record(ctx context.Context, e audit.Event) {
	if a.cfg.Audit == nil {
		return
	}
	if err := a.cfg.Audit.Record(ctx, e); err != nil {
		a.cfg.Logger.Error("audit", "action", e.Action, "error", err)
	}
}

// audit records the request's actor doing action on target.
func (a *api) audit(r *http.Request, action, target, result string, detail map[string]string) {
	actor, _ := ActorFrom(r.Context())
	a.record(r.Context(), actor.Event(action, target, result, detail))
}
