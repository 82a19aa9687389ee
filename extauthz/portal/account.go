package portal

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/helixflow/helixflow/internal/wire"
)

// accountRoutes: signing up, in and out, address verification, password
// reset, the profile and the sessions.
func (p *Portal) accountRoutes() []route {
	pp := wire.PortalPrefix
	return []route{
		{pattern: "GET " + pp + "signin", handler: p.signinPage},
		{pattern: "POST " + pp + "signin", handler: p.signinPost},
		{pattern: "GET " + pp + "signup", handler: p.signupPage},
		{pattern: "POST " + pp + "signup", handler: p.signupPost},
		{pattern: "POST " + pp + "signout", handler: p.signoutPost},
		{pattern: "GET " + pp + "verify", handler: p.verifyPage},
		{pattern: "POST " + pp + "verify", handler: p.verifyPost},
		{pattern: "GET " + pp + "reset", handler: p.resetPage},
		{pattern: "POST " + pp + "reset", handler: p.resetPost},
		{pattern: "POST " + pp + "reset/confirm", handler: p.resetConfirmPost},
		{pattern: "GET " + pp + "profile", signedIn: true, handler: p.profilePage},
		{pattern: "POST " + pp + "profile", signedIn: true, handler: p.profilePost},
		{pattern: "POST " + pp + "profile/password", signedIn: true, handler: p.passwordPost},
		{pattern: "POST " + pp + "profile/email", signedIn: true, handler: p.emailPost},
		{pattern: "POST " + pp + "profile/delete", signedIn: true, handler: p.deletePost},
		{pattern: "GET " + pp + "profile/export", signedIn: true, handler: p.exportGet},
		{pattern: "GET " + pp + "sessions", signedIn: true, handler: p.sessionsPage},
		{pattern: "POST " + pp + "sessions/end", signedIn: true, handler: p.endSessionPost},
	}
}

// notices are the messages a redirect after a change names with ?done=
// (a fixed list: nothing from the query reaches the page as text).
var notices = map[string]string{
	"signup":           "Check your inbox: we sent a link to verify your address. Follow it, then sign in.",
	"verified":         "Your address is verified. You can sign in now.",
	"signed-out":       "You are signed out.",
	"reset-sent":       "If that address has an account, a link to set a new password is on its way.",
	"password-reset":   "Your password is set. Sign in with it.",
	"profile-saved":    "Your profile is saved.",
	"password-changed": "Your password is changed. Your other sessions were ended.",
	"email-sent":       "We sent a link to your new address; the change applies once you follow it.",
	"deleted":          "Your account is deleted.",
	"session-ended":    "The session is ended.",
	"client-deleted":   "The client is deleted.",
	"key-revoked":      "The API key is revoked.",
	"org-created":      "The organization is created.",
}

// noticeOf is the notice a ?done= names ("" for none or an unknown one).
func noticeOf(r *http.Request) string { return notices[r.URL.Query().Get("done")] }

// done redirects (303) to the portal page at rel with ?done=key, keeping
// the organization the page was about.
func done(w http.ResponseWriter, r *http.Request, v *View, rel, key string) {
	q := url.Values{"done": {key}}
	if v != nil && v.Org != nil {
		q.Set("org", v.Org.ID)
	}
	http.Redirect(w, r, wire.PortalPrefix+rel+"?"+q.Encode(), http.StatusSeeOther)
}

// failed shows err on a form page: the API's status and description, or
// (a failure on our side, logged) 503 with a general message.
func (p *Portal) failed(v *View, err error) int {
	if e, ok := asAPIError(err); ok && e.Status < 500 {
		v.Error = sentence(e.Description)
		return e.Status
	}
	p.log.Error("portal: a form's API call failed", "error", err)
	v.Error = "That could not be done right now; try again shortly."
	return http.StatusServiceUnavailable
}

// sentence capitalizes an API description and ends it with a full stop.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "The request was refused."
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// safeNext is where a sign-in goes on to: a portal path on this origin
// (never another site, a scheme-relative URL or a backslash trick), else
// the portal's home.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || u.User != nil ||
		strings.ContainsAny(next, "\\\r\n\t") || strings.HasPrefix(next, "//") ||
		!strings.HasPrefix(u.Path, wire.PortalPrefix) || !cleanPath(u.Path) {
		return wire.PortalPrefix
	}
	return u.RequestURI()
}

// cleanPath: p has no dot segments and no empty ones (what path.Clean
// would change, a trailing slash aside).
func cleanPath(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// formText is a trimmed form field.
func formText(r *http.Request, name string) string { return strings.TrimSpace(r.PostFormValue(name)) }

// when formats a time for a page (UTC, to the minute); "" for zero.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// signinData is the sign-in page's.
type signinData struct{ Email, Next string }

func (p *Portal) signinPage(w http.ResponseWriter, r *http.Request, v *View) {
	next := safeNext(r.URL.Query().Get("next"))
	if v.Person != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	v.Title, v.Nav, v.Notice = "Sign in", "signin", noticeOf(r)
	v.Data = signinData{Next: next}
	p.render(w, http.StatusOK, "signin", v)
}

func (p *Portal) signinPost(w http.ResponseWriter, r *http.Request, v *View) {
	d := signinData{Email: formText(r, "email"), Next: safeNext(r.PostFormValue("next"))}
	v.Title, v.Nav, v.Data = "Sign in", "signin", d
	pw := r.PostFormValue("password")
	if d.Email == "" || pw == "" {
		v.Error = "Enter your email address and your password."
		p.render(w, http.StatusBadRequest, "signin", v)
		return
	}
	body := map[string]string{"email": d.Email, "password": pw}
	if err := p.api(w, r, nil, http.MethodPost, "/api/v1/login", body, nil); err != nil {
		status := p.failed(v, err)
		if e, ok := asAPIError(err); ok && e.Code == "email_not_verified" {
			v.Error = "Your address is not verified yet: follow the link we mailed you when you signed up."
		}
		p.render(w, status, "signin", v)
		return
	}
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

// signupData is the sign-up page's (never the password).
type signupData struct{ Email, DisplayName, Organization string }

func (p *Portal) signupPage(w http.ResponseWriter, r *http.Request, v *View) {
	if v.Person != nil {
		http.Redirect(w, r, wire.PortalPrefix, http.StatusSeeOther)
		return
	}
	v.Title, v.Nav, v.Data = "Sign up", "signup", signupData{}
	p.render(w, http.StatusOK, "signup", v)
}

func (p *Portal) signupPost(w http.ResponseWriter, r *http.Request, v *View) {
	d := signupData{Email: formText(r, "email"), DisplayName: formText(r, "display_name"), Organization: formText(r, "organization")}
	v.Title, v.Nav, v.Data = "Sign up", "signup", d
	pw := r.PostFormValue("password")
	switch {
	case d.Email == "" || pw == "":
		v.Error = "Enter an email address and a password."
	case pw != r.PostFormValue("password_confirm"):
		v.Error = "The two passwords differ; type the same password twice."
	}
	if v.Error != "" {
		p.render(w, http.StatusBadRequest, "signup", v)
		return
	}
	body := map[string]string{"email": d.Email, "password": pw, "display_name": d.DisplayName, "organization": d.Organization}
	if err := p.api(nil, r, nil, http.MethodPost, "/api/v1/signup", body, nil); err != nil {
		p.render(w, p.failed(v, err), "signup", v)
		return
	}
	done(w, r, nil, "signin", "signup")
}

func (p *Portal) signoutPost(w http.ResponseWriter, r *http.Request, v *View) {
	if v.Person != nil {
		if err := p.api(w, r, v, http.MethodPost, "/api/v1/logout", nil, nil); err != nil {
			p.apiFailure(w, r, v, err)
			return
		}
	}
	done(w, r, nil, "", "signed-out")
}

// tokenData is the verify and reset pages' (the mailed link's token).
type tokenData struct{ Token, Email string }

func (p *Portal) verifyPage(w http.ResponseWriter, r *http.Request, v *View) {
	// GET only shows the button: mail scanners follow links, and a GET
	// must not use the token up.
	v.Title, v.Data = "Verify your address", tokenData{Token: r.URL.Query().Get("token")}
	p.render(w, http.StatusOK, "verify", v)
}

func (p *Portal) verifyPost(w http.ResponseWriter, r *http.Request, v *View) {
	d := tokenData{Token: formText(r, "token")}
	v.Title, v.Data = "Verify your address", d
	if d.Token == "" {
		v.Error = "The link has no token: open the whole link from the mail."
		p.render(w, http.StatusBadRequest, "verify", v)
		return
	}
	if err := p.api(nil, r, nil, http.MethodPost, "/api/v1/verify-email", map[string]string{"token": d.Token}, nil); err != nil {
		p.render(w, p.failed(v, err), "verify", v)
		return
	}
	done(w, r, nil, "signin", "verified")
}

func (p *Portal) resetPage(w http.ResponseWriter, r *http.Request, v *View) {
	v.Title, v.Notice = "Reset your password", noticeOf(r)
	v.Data = tokenData{Token: r.URL.Query().Get("token")}
	p.render(w, http.StatusOK, "reset", v)
}

func (p *Portal) resetPost(w http.ResponseWriter, r *http.Request, v *View) {
	d := tokenData{Email: formText(r, "email")}
	v.Title, v.Data = "Reset your password", d
	if d.Email == "" {
		v.Error = "Enter the email address of your account."
		p.render(w, http.StatusBadRequest, "reset", v)
		return
	}
	if err := p.api(nil, r, nil, http.MethodPost, "/api/v1/password-reset", map[string]string{"email": d.Email}, nil); err != nil {
		p.render(w, p.failed(v, err), "reset", v)
		return
	}
	done(w, r, nil, "reset", "reset-sent")
}

func (p *Portal) resetConfirmPost(w http.ResponseWriter, r *http.Request, v *View) {
	d := tokenData{Token: formText(r, "token")}
	v.Title, v.Data = "Reset your password", d
	pw := r.PostFormValue("new_password")
	switch {
	case d.Token == "":
		v.Error = "The link has no token: open the whole link from the mail."
	case pw == "":
		v.Error = "Enter a new password."
	case pw != r.PostFormValue("new_password_confirm"):
		v.Error = "The two passwords differ; type the same password twice."
	}
	if v.Error != "" {
		p.render(w, http.StatusBadRequest, "reset", v)
		return
	}
	if err := p.api(nil, r, nil, http.MethodPost, "/api/v1/password-reset/confirm",
		map[string]string{"token": d.Token, "new_password": pw}, nil); err != nil {
		p.render(w, p.failed(v, err), "reset", v)
		return
	}
	done(w, r, nil, "signin", "password-reset")
}

// account is /api/v1/account's user.
type account struct {
	ID            string    `json:"id"`
	Email         string    `json:"email"`
	EmailVerified bool      `json:"email_verified"`
	DisplayName   string    `json:"display_name"`
	Organization  string    `json:"organization"`
	PlatformAdmin bool      `json:"platform_admin"`
	CreatedAt     time.Time `json:"created_at"`
}

// profileData is the profile page's: the account, with the profile form's
// values when a change was refused.
type profileData struct {
	Account                   account
	Since                     string
	DisplayName, Organization string
	NewEmail                  string
}

func (p *Portal) profileView(w http.ResponseWriter, r *http.Request, v *View, status int, form *profileData) {
	var a account
	if err := p.api(nil, r, v, http.MethodGet, "/api/v1/account", nil, &a); err != nil {
		p.apiFailure(w, r, v, err)
		return
	}
	d := profileData{Account: a, Since: when(a.CreatedAt), DisplayName: a.DisplayName, Organization: a.Organization}
	if form != nil {
		d.DisplayName, d.Organization, d.NewEmail = form.DisplayName, form.Organization, form.NewEmail
	}
	v.Title, v.Nav, v.Data = "Your profile", "profile", d
	p.render(w, status, "profile", v)
}

func (p *Portal) profilePage(w http.ResponseWriter, r *http.Request, v *View) {
	v.Notice = noticeOf(r)
	p.profileView(w, r, v, http.StatusOK, nil)
}

func (p *Portal) profilePost(w http.ResponseWriter, r *http.Request, v *View) {
	form := &profileData{DisplayName: formText(r, "display_name"), Organization: formText(r, "organization")}
	body := map[string]string{"display_name": form.DisplayName, "organization": form.Organization}
	if err := p.api(nil, r, v, http.MethodPatch, "/api/v1/account", body, nil); err != nil {
		p.profileView(w, r, v, p.failed(v, err), form)
		return
	}
	done(w, r, nil, "profile", "profile-saved")
}

func (p *Portal) passwordPost(w http.ResponseWriter, r *http.Request, v *View) {
	cur, next := r.PostFormValue("current_password"), r.PostFormValue("new_password")
	switch {
	case cur == "" || next == "":
		v.Error = "Enter your current password and a new one."
	case next != r.PostFormValue("new_password_confirm"):
		v.Error = "The two new passwords differ; type the same password twice."
	}
	if v.Error != "" {
		p.profileView(w, r, v, http.StatusBadRequest, nil)
		return
	}
	body := map[string]string{"current_password": cur, "new_password": next}
	if err := p.api(nil, r, v, http.MethodPost, "/api/v1/account/password", body, nil); err != nil {
		p.profileView(w, r, v, p.failed(v, err), nil)
		return
	}
	done(w, r, nil, "profile", "password-changed")
}

func (p *Portal) emailPost(w http.ResponseWriter, r *http.Request, v *View) {
	form := &profileData{NewEmail: formText(r, "new_email")}
	pw := r.PostFormValue("password")
	if form.NewEmail == "" || pw == "" {
		v.Error = "Enter the new address and your password."
		p.profileView(w, r, v, http.StatusBadRequest, form)
		return
	}
	if err := p.api(nil, r, v, http.MethodPost, "/api/v1/account/email", map[string]string{"new_email": form.NewEmail, "password": pw}, nil); err != nil {
		status := p.failed(v, err)
		p.profileView(w, r, v, status, form)
		return
	}
	done(w, r, nil, "profile", "email-sent")
}

func (p *Portal) deletePost(w http.ResponseWriter, r *http.Request, v *View) {
	pw := r.PostFormValue("password")
	if pw == "" || r.PostFormValue("confirm") != "yes" {
		v.Error = "To delete your account, tick the box and enter your password."
		p.profileView(w, r, v, http.StatusBadRequest, nil)
		return
	}
	if err := p.api(w, r, v, http.MethodDelete, "/api/v1/account", map[string]string{"password": pw}, nil); err != nil {
		p.profileView(w, r, v, p.failed(v, err), nil)
		return
	}
	done(w, r, nil, "", "deleted")
}

// exportGet downloads everything held about the person (the API's export).
func (p *Portal) exportGet(w http.ResponseWriter, r *http.Request, v *View) {
	var raw json.RawMessage
	if err := p.api(nil, r, v, http.MethodGet, "/api/v1/account/export", nil, &raw); err != nil {
		p.apiFailure(w, r, v, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="helixflow-account.json"`)
	_, _ = w.Write(raw)
}

// sessionRow is one of the person's sessions as the sessions page shows it.
type sessionRow struct {
	ID, Kind, ClientID, Created, LastSeen, Expires, Source, UserAgent string
	Current                                                           bool
}

func (p *Portal) sessionsView(w http.ResponseWriter, r *http.Request, v *View, status int) {
	var list struct {
		Sessions []struct {
			ID         string    `json:"id"`
			Kind       string    `json:"kind"`
			ClientID   *string   `json:"client_id"`
			CreatedAt  time.Time `json:"created_at"`
			LastSeenAt time.Time `json:"last_seen_at"`
			ExpiresAt  time.Time `json:"expires_at"`
			Source     string    `json:"source"`
			UserAgent  string    `json:"user_agent"`
			Current    bool      `json:"current"`
		} `json:"sessions"`
	}
	if err := p.api(nil, r, v, http.MethodGet, "/api/v1/account/sessions", nil, &list); err != nil {
		p.apiFailure(w, r, v, err)
		return
	}
	rows := make([]sessionRow, 0, len(list.Sessions))
	for _, s := range list.Sessions {
		row := sessionRow{ID: s.ID, Kind: s.Kind, Created: when(s.CreatedAt), LastSeen: when(s.LastSeenAt),
			Expires: when(s.ExpiresAt), Source: s.Source, UserAgent: s.UserAgent, Current: s.Current}
		if s.ClientID != nil {
			row.ClientID = *s.ClientID
		}
		rows = append(rows, row)
	}
	v.Title, v.Nav, v.Data = "Your sessions", "profile", rows
	p.render(w, status, "sessions", v)
}

func (p *Portal) sessionsPage(w http.ResponseWriter, r *http.Request, v *View) {
	v.Notice = noticeOf(r)
	p.sessionsView(w, r, v, http.StatusOK)
}

func (p *Portal) endSessionPost(w http.ResponseWriter, r *http.Request, v *View) {
	id := formText(r, "id")
	if id == "" {
		v.Error = "Choose a session to end."
		p.sessionsView(w, r, v, http.StatusBadRequest)
		return
	}
	if err := p.api(w, r, v, http.MethodDelete, "/api/v1/account/sessions/"+url.PathEscape(id), nil, nil); err != nil {
		p.sessionsView(w, r, v, p.failed(v, err))
		return
	}
	if id == v.principal.SessionID {
		done(w, r, nil, "signin", "signed-out")
		return
	}
	done(w, r, nil, "sessions", "session-ended")
}
