package accounts

import (
	"embed"
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/webapi"
)

// The pages a person needs without the portal: sign in (for an OAuth2
// app's authorize request), confirm an address, reset a password. Forms
// post to the same path; a GET never uses a link token (mail scanners
// fetch links), only the form's POST does. No script, no inline style:
// the CSP below allows the same-origin style sheet and nothing else.
// Every form carries a CSRF token checked against the double-submit cookie
// __Host-helix_csrf (the pages act before there is a session).

//go:embed web/pages.html web/helix.css
var web embed.FS

var pages = template.Must(template.ParseFS(web, "web/pages.html"))

const (
	csrfCookie = "__Host-helix_csrf"
	// contentSecurityPolicy: only the same-origin style sheet loads, forms
	// post only here, nothing frames the pages.
	contentSecurityPolicy = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	// returnToPrefix is the only place /login sends a person back to.
	returnToPrefix = "/oauth2/authorize?"
)

// page is what a template shows.
type page struct {
	Title, Error, Notice string
	CSRF                 string
	Token                string
	Email, ReturnTo      string
	Done                 bool
}

func (s *Service) mountPages(mux *http.ServeMux) {
	css, err := web.ReadFile("web/helix.css")
	if err != nil {
		panic(err) // embedded at build time
	}
	mux.HandleFunc("GET /assets/helix.css", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/css; charset=utf-8")
		h.Set("Cache-Control", "public, max-age=3600")
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(css)
	})
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.loginPost)
	mux.HandleFunc("GET /verify-email", s.verifyPage)
	mux.HandleFunc("POST /verify-email", s.verifyPost)
	mux.HandleFunc("GET /reset-password", s.resetPage)
	mux.HandleFunc("POST /reset-password", s.resetPost)
}

// render answers a page with the security headers every page carries.
func (s *Service) render(w http.ResponseWriter, status int, name string, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: the link tokens in these pages' URLs
	// still never leave for another site, and browsers keep sending the
	// real Origin on the forms' POSTs (under no-referrer they send
	// "Origin: null", which the CSRF check rightly refuses).
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, p); err != nil {
		s.log.Error("page not rendered", "page", name, "error", err)
	}
}

// csrf returns the request's double-submit token, setting the cookie when
// there is none yet.
func (s *Service) csrf(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	tok, err := session.NewSecret()
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: tok, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	return tok
}

// form parses a page's POST and checks its origin and CSRF token; false
// when it has answered (403 csrf_failed, or 400).
func (s *Service) form(w http.ResponseWriter, r *http.Request, name string, p *page) bool {
	r.Body = http.MaxBytesReader(w, r.Body, webapi.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		p.Error = "The form could not be read."
		s.render(w, http.StatusBadRequest, name, *p)
		return false
	}
	p.CSRF = s.csrf(w, r)
	c, err := r.Cookie(csrfCookie)
	if !s.sessions.SameOrigin(r) || err != nil || !session.ConstantTimeEqual(r.PostForm.Get("csrf_token"), c.Value) {
		p.Error = "The form expired or came from another site (csrf_failed). Please try again."
		s.render(w, http.StatusForbidden, name, *p)
		return false
	}
	return true
}

// pageError is the message and status a page shows for err.
func (s *Service) pageError(r *http.Request, err error) (int, string) {
	var e *apiError
	if errors.As(err, &e) {
		if e.retryAfter > 0 {
			return e.status, "Too many attempts. Please wait a moment and try again."
		}
		return e.status, upperFirst(e.desc) + "."
	}
	s.log.Error("accounts page failed", "path", r.URL.Path, "error", err)
	return http.StatusServiceUnavailable, "Something went wrong on our side. Please try again shortly."
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// validReturnTo: empty, or an authorize request on this server.
func validReturnTo(v string) bool {
	return v == "" || (strings.HasPrefix(v, returnToPrefix) && !strings.ContainsAny(v, "\\\r\n\t"))
}

func (s *Service) loginPage(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Sign in", CSRF: s.csrf(w, r), ReturnTo: r.URL.Query().Get("return_to")}
	if !validReturnTo(p.ReturnTo) {
		p.ReturnTo, p.Error = "", "The sign-in link is not valid: return_to must be an authorization request of this server."
		s.render(w, http.StatusBadRequest, "login", p)
		return
	}
	s.render(w, http.StatusOK, "login", p)
}

func (s *Service) loginPost(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Sign in"}
	if !s.form(w, r, "login", &p) {
		return
	}
	p.Email, p.ReturnTo = r.PostForm.Get("email"), r.PostForm.Get("return_to")
	if !validReturnTo(p.ReturnTo) {
		p.ReturnTo, p.Error = "", "The sign-in link is not valid: return_to must be an authorization request of this server."
		s.render(w, http.StatusBadRequest, "login", p)
		return
	}
	c := s.caller(r)
	u, err := s.login(r.Context(), c, loginRequest{Email: p.Email, Password: r.PostForm.Get("password")})
	if err == nil {
		_, err = s.startSession(r.Context(), w, r, c, u)
	}
	if err != nil {
		var status int
		status, p.Error = s.pageError(r, err)
		var e *apiError
		if errors.As(err, &e) && e.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
		}
		s.render(w, status, "login", p)
		return
	}
	if p.ReturnTo != "" {
		http.Redirect(w, r, p.ReturnTo, http.StatusSeeOther)
		return
	}
	s.render(w, http.StatusOK, "login", page{Title: "Signed in", Notice: "You are signed in.", Done: true})
}

func (s *Service) verifyPage(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Confirm your email address", CSRF: s.csrf(w, r), Token: r.URL.Query().Get("token")}
	if tokenField(p.Token) != nil {
		p.Token, p.Error = "", upperFirst(errInvalidToken.desc)+"."
		s.render(w, http.StatusBadRequest, "verify", p)
		return
	}
	s.render(w, http.StatusOK, "verify", p)
}

func (s *Service) verifyPost(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Confirm your email address"}
	if !s.form(w, r, "verify", &p) {
		return
	}
	if _, err := s.verifyEmail(r.Context(), s.caller(r), r.PostForm.Get("token")); err != nil {
		var status int
		status, p.Error = s.pageError(r, err)
		s.render(w, status, "verify", p)
		return
	}
	s.render(w, http.StatusOK, "verify", page{Title: "Address confirmed", Notice: "Your email address is confirmed.", Done: true})
}

func (s *Service) resetPage(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Reset your password", CSRF: s.csrf(w, r), Token: r.URL.Query().Get("token")}
	if p.Token != "" && tokenField(p.Token) != nil {
		p.Token, p.Error, p.Done = "", upperFirst(errInvalidToken.desc)+".", true
		s.render(w, http.StatusBadRequest, "reset", p)
		return
	}
	s.render(w, http.StatusOK, "reset", p)
}

// resetPost is either the request for a link (email) or the new password
// (token).
func (s *Service) resetPost(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Reset your password"}
	if !s.form(w, r, "reset", &p) {
		return
	}
	c := s.caller(r)
	if token := r.PostForm.Get("token"); token != "" {
		p.Token = token
		pw := r.PostForm.Get("new_password")
		if pw != r.PostForm.Get("new_password_again") {
			p.Error = "The two passwords differ."
			s.render(w, http.StatusBadRequest, "reset", p)
			return
		}
		if err := s.confirmReset(r.Context(), c, resetConfirmRequest{Token: token, NewPassword: pw}); err != nil {
			var status int
			status, p.Error = s.pageError(r, err)
			if errors.Is(err, errInvalidToken) {
				p.Token, p.Done = "", true
			}
			s.render(w, status, "reset", p)
			return
		}
		s.render(w, http.StatusOK, "reset", page{Title: "Password changed", Notice: "Your password is changed and every session signed out. Sign in with the new one.", Done: true})
		return
	}
	if err := s.requestReset(r.Context(), c, resetRequest{Email: r.PostForm.Get("email")}); err != nil {
		var status int
		status, p.Error = s.pageError(r, err)
		s.render(w, status, "reset", p)
		return
	}
	s.render(w, http.StatusOK, "reset", page{Title: "Check your mail", Done: true,
		Notice: "If an account has this address, a link to reset its password is on its way. It works once and expires soon."})
}
