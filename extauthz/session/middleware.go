package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/extauthz/webapi"
)

// The HTTP side: the cookie, resolving the caller, CSRF and Origin.

// SetCookie hands a new browser session to the browser.
func (m *Manager) SetCookie(w http.ResponseWriter, c Created) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: c.Secret, Path: "/", Expires: c.ExpiresAt,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// ClearCookie removes the session cookie.
func (m *Manager) ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// Middleware resolves the caller: "Authorization: Bearer" (verified by the
// BearerVerifier; a request that sends one is judged by it alone) or the
// session cookie, and puts the Principal in the context. Cookie-authenticated
// unsafe methods need X-CSRF-Token equal to the session's token; any unsafe
// request that sends an Origin other than the public origin is refused
// (403 csrf_failed). A request with neither goes on without a principal
// (Require refuses it); a bad token is 401, a dead cookie no principal.
// When the database (or the verifier's stores) cannot answer, the answer is
// 503 temporarily_unavailable: never an anonymous pass nor a 401.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unsafe := !isSafe(r.Method)
		if unsafe && !m.SameOrigin(r) {
			webapi.WriteError(w, http.StatusForbidden, webapi.CodeCSRF, "the request's Origin is not this server's")
			return
		}
		if auth := r.Header.Get("Authorization"); auth != "" {
			scheme, raw, _ := strings.Cut(auth, " ")
			if !strings.EqualFold(scheme, "Bearer") || raw == "" || m.bearer == nil {
				webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "the Authorization header must carry a person's bearer access token")
				return
			}
			userID, sid, scopes, err := m.bearer.VerifyUserToken(r.Context(), strings.TrimSpace(raw))
			if errors.Is(err, ErrUnavailable) {
				m.unavailable(w, err)
				return
			}
			if err != nil {
				webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "the bearer token is not valid for this API")
				return
			}
			p := Principal{UserID: userID, SessionID: sid, Via: ViaBearer, Scopes: scopes}
			ok, err := m.loadUser(r.Context(), &p)
			if err != nil {
				m.unavailable(w, err)
				return
			}
			if !ok {
				webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "the bearer token's user no longer exists")
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
			return
		}
		c, err := r.Cookie(CookieName)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		p, ok, err := m.byCookie(r.Context(), c.Value)
		if err != nil {
			m.unavailable(w, err)
			return
		}
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if unsafe && !ConstantTimeEqual(r.Header.Get(CSRFHeader), p.CSRFToken) {
			webapi.WriteError(w, http.StatusForbidden, webapi.CodeCSRF, "a cookie-authenticated change needs the session's CSRF token in the X-CSRF-Token header")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// Require answers 401 unauthorized to a request without a principal.
func (m *Manager) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := PrincipalFrom(r.Context()); !ok {
			webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "sign in first: no live session cookie or bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SameOrigin says whether r sent no Origin, the public origin or one of
// Config.OtherOrigins.
func (m *Manager) SameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || strings.EqualFold(o, m.origin) {
		return true
	}
	for _, other := range m.others {
		if strings.EqualFold(o, other) {
			return true
		}
	}
	return false
}

func (m *Manager) loadUser(ctx context.Context, p *Principal) (bool, error) {
	if !isUUID(p.UserID) {
		return false, nil
	}
	err := m.db.QueryRow(ctx, `SELECT platform_admin FROM users WHERE id = $1::uuid AND erased_at IS NULL`, p.UserID).
		Scan(&p.PlatformAdmin)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("session: load user: %w", err)
	}
	return true, nil
}

func (m *Manager) unavailable(w http.ResponseWriter, err error) {
	m.log.Error("resolving the caller failed", "error", err)
	webapi.WriteError(w, http.StatusServiceUnavailable, webapi.CodeUnavailable, "sessions cannot be checked right now; try again shortly")
}

// FromCookie resolves r's browser session alone (no bearer token, no CSRF
// check): for the portal's pages, whose forms carry their CSRF token in a
// field and which check it themselves. ok is false without a live session;
// err means the database could not answer.
func (m *Manager) FromCookie(r *http.Request) (p Principal, ok bool, err error) {
	c, cerr := r.Cookie(CookieName)
	if cerr != nil {
		return Principal{}, false, nil
	}
	return m.byCookie(r.Context(), c.Value)
}
