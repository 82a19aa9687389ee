package accounts

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/webapi"
)

// ScopeAccount is the scope a person's bearer token needs for /api/v1.
const ScopeAccount = "account"

// Mount serves the accounts' JSON API and pages on mux (the public port's).
//
//	POST   /api/v1/signup                  none       202 {"status":"verification_sent"}
//	POST   /api/v1/verify-email            none       200 user
//	POST   /api/v1/login                   none       200 {user, csrf_token, session} + cookie
//	POST   /api/v1/logout                  principal  204
//	POST   /api/v1/password-reset          none       202 {"status":"reset_requested"}
//	POST   /api/v1/password-reset/confirm  none       204
//	GET    /api/v1/account                 principal  200 user (+ X-CSRF-Token for a cookie)
//	PATCH  /api/v1/account                 principal  200 user
//	POST   /api/v1/account/password        principal  204
//	POST   /api/v1/account/email           principal  202 {"status":"verification_sent"}
//	DELETE /api/v1/account                 principal  204
//	GET    /api/v1/account/export          principal  200 export
//	GET    /api/v1/account/sessions        principal  200 {"sessions": [...]}
//	DELETE /api/v1/account/sessions/{id}   principal  204
func (s *Service) Mount(mux *http.ServeMux) {
	var routes []webapi.Route
	for _, r := range []struct {
		pattern string
		signed  bool // needs a principal
		h       http.HandlerFunc
	}{
		{"POST /api/v1/signup", false, s.handleSignup},
		{"POST /api/v1/verify-email", false, s.handleVerify},
		{"POST /api/v1/login", false, s.handleLogin},
		{"POST /api/v1/logout", true, s.handleLogout},
		{"POST /api/v1/password-reset", false, s.handleResetRequest},
		{"POST /api/v1/password-reset/confirm", false, s.handleResetConfirm},
		{"GET /api/v1/account", true, s.handleAccount},
		{"PATCH /api/v1/account", true, s.handleProfile},
		{"DELETE /api/v1/account", true, s.handleDelete},
		{"POST /api/v1/account/password", true, s.handlePassword},
		{"POST /api/v1/account/email", true, s.handleEmail},
		{"GET /api/v1/account/export", true, s.handleExport},
		{"GET /api/v1/account/sessions", true, s.handleSessions},
		{"DELETE /api/v1/account/sessions/{id}", true, s.handleEndSession},
	} {
		h := s.sameOrigin(r.h)
		if r.signed {
			h = s.sessions.Middleware(s.sessions.Require(requireScope(r.h)))
		}
		routes = append(routes, webapi.Route{Pattern: r.pattern, Handler: h})
	}
	webapi.Handle(mux, routes...)
	s.mountPages(mux)
}

// sameOrigin refuses an unauthenticated change sent from another origin
// (login CSRF); it needs no token, as it acts on no session.
func (s *Service) sameOrigin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.sessions.SameOrigin(r) {
			webapi.WriteError(w, http.StatusForbidden, webapi.CodeCSRF, "the request's Origin is not this server's")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// requireScope: a bearer needs scope "account" (a cookie may do all).
func requireScope(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, _ := session.PrincipalFrom(r.Context()); !p.HasScope(ScopeAccount) {
			webapi.WriteError(w, http.StatusForbidden, webapi.CodeForbidden, "the token lacks scope \"account\"")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// writeErr answers err: an apiError as it says, anything else as 503
// (the database or a dependency failed; logged, never shown).
func (s *Service) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var e *apiError
	if errors.As(err, &e) {
		if e.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
		}
		webapi.WriteError(w, e.status, e.code, e.desc)
		return
	}
	s.log.Error("accounts request failed", "path", r.URL.Path, "error", err)
	webapi.WriteError(w, http.StatusServiceUnavailable, webapi.CodeUnavailable, "the request could not be completed; try again shortly")
}

func principal(r *http.Request) session.Principal {
	p, _ := session.PrincipalFrom(r.Context())
	return p
}

func (s *Service) handleSignup(w http.ResponseWriter, r *http.Request) {
	var in signupRequest
	if !webapi.Decode(w, r, &in) {
		return
	}
	if err := s.signUp(r.Context(), s.caller(r), in); err != nil {
		s.writeErr(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "verification_sent"})
}

func (s *Service) handleVerify(w http.ResponseWriter, r *http.Request) {
	var in tokenRequest
	if !webapi.Decode(w, r, &in) {
		return
	}
	u, err := s.verifyEmail(r.Context(), s.caller(r), in.Token)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, u)
}

// loginAnswer is POST /api/v1/login's answer.
type loginAnswer struct {
	User      *User       `json:"user"`
	CSRFToken string      `json:"csrf_token"`
	Session   sessionView `json:"session"`
}

type sessionView struct {
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) {
	var in loginRequest
	if !webapi.Decode(w, r, &in) {
		return
	}
	c := s.caller(r)
	u, err := s.login(r.Context(), c, in)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	created, err := s.startSession(r.Context(), w, r, c, u)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, loginAnswer{
		User: u, CSRFToken: created.CSRFToken, Session: sessionView{ID: created.ID, ExpiresAt: created.ExpiresAt},
	})
}

func (s *Service) handleLogout(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if err := s.sessions.End(r.Context(), p.SessionID); err != nil {
		s.writeErr(w, r, err)
		return
	}
	if p.Via == session.ViaCookie {
		s.sessions.ClearCookie(w)
	}
	s.record(r.Context(), s.caller(r), "account.logout", userRef(p.UserID), "session:"+p.SessionID, audit.ResultSuccess, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleResetRequest(w http.ResponseWriter, r *http.Request) {
	var in resetRequest
	if !webapi.Decode(w, r, &in) {
		return
	}
	if err := s.requestReset(r.Context(), s.caller(r), in); err != nil {
		s.writeErr(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "reset_requested"})
}

func (s *Service) handleResetConfirm(w http.ResponseWriter, r *http.Request) {
	var in resetConfirmRequest
	if !webapi.Decode(w, r, &in) {
		return
	}
	if err := s.confirmReset(r.Context(), s.caller(r), in); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleAccount(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	u, err := s.account(r.Context(), p)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if p.CSRFToken != "" {
		w.Header().Set(session.CSRFHeader, p.CSRFToken)
	}
	webapi.WriteJSON(w, http.StatusOK, u)
}

func (s *Service) handleProfile(w http.ResponseWriter, r *http.Request) {
	var in profileRequest
	if !webapi.Decode(w, r, &in) {
		return
	}
	u, err := s.updateProfile(r.Context(), s.caller(r), principal(r), in)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, u)
}

func (s *Service) handlePassword(w http.ResponseWriter, r *http.Request) {
	var in passwordChangeRequest
	if !webapi.Decode(w, r, &in) {
		return
	}
	if err := s.changePassword(r.Context(), s.caller(r), principal(r), in); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleEmail(w http.ResponseWriter, r *http.Request) {
	var in emailChangeRequest
	if !webapi.Decode(w, r, &in) {
		return
	}
	if err := s.changeEmail(r.Context(), s.caller(r), principal(r), in); err != nil {
		s.writeErr(w, r, err)
		return
	}
	webapi.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "verification_sent"})
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) {
	var in passwordRequest
	if !webapi.Decode(w, r, &in) {
		return
	}
	p := principal(r)
	if err := s.deleteAccount(r.Context(), s.caller(r), p, in); err != nil {
		s.writeErr(w, r, err)
		return
	}
	if p.Via == session.ViaCookie {
		s.sessions.ClearCookie(w)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleExport(w http.ResponseWriter, r *http.Request) {
	b, err := s.export(r.Context(), s.caller(r), principal(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Disposition", `attachment; filename="helixflow-account.json"`)
	_, _ = w.Write(b)
}

func (s *Service) handleSessions(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	list, err := s.sessions.List(r.Context(), p.UserID, p.SessionID)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if list == nil {
		list = []session.Info{}
	}
	webapi.WriteJSON(w, http.StatusOK, map[string][]session.Info{"sessions": list})
}

func (s *Service) handleEndSession(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	id := r.PathValue("id")
	err := s.sessions.EndOwn(r.Context(), p.UserID, id)
	if errors.Is(err, session.ErrNotFound) {
		webapi.WriteError(w, http.StatusNotFound, webapi.CodeNotFound, "you have no session with that id")
		return
	}
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	if id == p.SessionID && p.Via == session.ViaCookie {
		s.sessions.ClearCookie(w)
	}
	s.record(r.Context(), s.caller(r), "account.session_end", userRef(p.UserID), "session:"+id, audit.ResultSuccess, nil)
	w.WriteHeader(http.StatusNoContent)
}
