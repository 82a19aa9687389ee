package portal

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/wire"
)

// csrfCookie is the portal's double-submit CSRF cookie; csrfField the form
// field that must equal it.
const (
	csrfCookie = "__Host-helix_portal_csrf"
	csrfField  = "csrf"
	// maxFormBytes bounds a POSTed form: the largest is a model list or a
	// profile, far below it.
	maxFormBytes = 64 << 10
)

// View is what the layout and every page template get.
type View struct {
	Title string
	// Nav is the active navigation entry ("models", "usage").
	Nav string
	// Person is the signed-in person; nil on an anonymous request.
	Person *Person
	// Orgs are the person's organizations; Org the one the page is about
	// (?org=, else the first); nil when the person has none.
	Orgs []OrgRef
	Org  *OrgRef
	// CSRF goes into every form's csrf field.
	CSRF string
	// Notice and Error are shown at the top of the page (role=status and
	// role=alert); Error is what the API or the form check answered.
	Notice, Error string
	// Data is the page's own.
	Data any

	principal session.Principal
}

// Person is the signed-in person as the layout shows them.
type Person struct {
	ID, Email, DisplayName string
	PlatformAdmin          bool
}

// OrgRef is one organization the person belongs to, with their role.
type OrgRef struct {
	ID, Name, Role string
}

// Principal is the session behind the view (zero when anonymous).
func (v *View) Principal() session.Principal { return v.principal }

// OrgQuery is "?org=<id>" for links that keep the current organization.
func (v *View) OrgQuery() string {
	if v.Org == nil {
		return ""
	}
	return "?org=" + url.QueryEscape(v.Org.ID)
}

var funcs = template.FuncMap{
	"portal": func(p string) string { return wire.PortalPrefix + strings.TrimPrefix(p, "/") },
	// segment escapes a name for one path segment: html/template leaves
	// '?' and '#' of a path as they are, and a model name may hold them.
	"segment": url.PathEscape,
}

// page wraps a page handler: security headers, the CSRF cookie, the
// browser session (and, signed in, the person and their organizations),
// and for POSTs the origin and CSRF checks.
func (p *Portal) page(h pageHandler, signedIn bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		v := &View{CSRF: p.csrfToken(w, r)}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !p.sameOrigin(r) {
				p.fail(w, r, v, http.StatusForbidden, "This form was not sent from this site. Reload the page and try again.")
				return
			}
			// A form is a few fields; net/http would read 10 MB of one.
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					p.fail(w, r, v, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form is larger than %d KiB; shorten what you entered.", maxFormBytes>>10))
					return
				}
				p.fail(w, r, v, http.StatusBadRequest, "The form could not be read: "+err.Error())
				return
			}
			if c, err := r.Cookie(csrfCookie); err != nil || !session.ConstantTimeEqual(r.PostForm.Get(csrfField), c.Value) {
				p.fail(w, r, v, http.StatusForbidden, "This form has expired or was not sent from this site. Reload the page and try again.")
				return
			}
		}
		pr, ok, err := p.cfg.Sessions.FromCookie(r)
		if err != nil {
			p.log.Error("portal: resolving the session failed", "error", err)
			p.fail(w, r, v, http.StatusServiceUnavailable, "Sessions cannot be checked right now; try again shortly.")
			return
		}
		if ok {
			v.principal = pr
			if err := p.loadPerson(r, v); err != nil {
				p.apiFailure(w, r, v, err)
				return
			}
		}
		if signedIn && v.Person == nil {
			http.Redirect(w, r, wire.PortalPrefix+"signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		h(w, r, v)
	})
}

// loadPerson fills v's person and organizations from the JSON API.
func (p *Portal) loadPerson(r *http.Request, v *View) error {
	var acct struct {
		ID            string `json:"id"`
		Email         string `json:"email"`
		DisplayName   string `json:"display_name"`
		PlatformAdmin bool   `json:"platform_admin"`
	}
	if err := p.api(nil, r, v, http.MethodGet, "/api/v1/account", nil, &acct); err != nil {
		return err
	}
	v.Person = &Person{ID: acct.ID, Email: acct.Email, DisplayName: acct.DisplayName, PlatformAdmin: acct.PlatformAdmin}
	var orgs struct {
		Orgs []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
			Role string `json:"role"`
		} `json:"orgs"`
	}
	if err := p.api(nil, r, v, http.MethodGet, "/api/v1/orgs", nil, &orgs); err != nil {
		return err
	}
	want := r.URL.Query().Get("org")
	for _, o := range orgs.Orgs {
		v.Orgs = append(v.Orgs, OrgRef{ID: o.ID, Name: o.Name, Role: o.Role})
	}
	for i := range v.Orgs {
		if v.Orgs[i].ID == want || (want == "" && i == 0) {
			v.Org = &v.Orgs[i]
		}
	}
	return nil
}

// render answers the page name with v.
func (p *Portal) render(w http.ResponseWriter, status int, name string, v *View) {
	t, ok := p.pages[name]
	if !ok {
		p.log.Error("portal: no such page", "page", name)
		http.Error(w, "page not found", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := t.ExecuteTemplate(w, "layout.html", v); err != nil {
		p.log.Error("portal: page not rendered", "page", name, "error", err)
	}
}

// fail answers a page request with the error page.
func (p *Portal) fail(w http.ResponseWriter, _ *http.Request, v *View, status int, msg string) {
	v.Title, v.Error = http.StatusText(status), msg
	p.render(w, status, "error", v)
}

// apiFailure answers a page whose API call failed with the API's status
// and description.
func (p *Portal) apiFailure(w http.ResponseWriter, r *http.Request, v *View, err error) {
	if e, ok := asAPIError(err); ok {
		p.fail(w, r, v, e.Status, e.Description)
		return
	}
	p.log.Error("portal: API call failed", "error", err)
	p.fail(w, r, v, http.StatusInternalServerError, "Something went wrong on our side; try again shortly.")
}

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	h.Set("Cache-Control", "no-store")
}

// csrfToken returns the browser's portal CSRF token, setting the cookie
// when it has none.
func (p *Portal) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return tok
	}
	return "" // a POST without the cookie fails its check
}

// sameOrigin: a POST's Origin (or, without one, its Referer) is the
// public origin. Browsers send Origin on every cross-site POST.
func (p *Portal) sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		return strings.EqualFold(o, p.cfg.PublicOrigin)
	}
	ref, err := url.Parse(r.Header.Get("Referer"))
	return err == nil && ref.Scheme != "" && strings.EqualFold(ref.Scheme+"://"+ref.Host, p.cfg.PublicOrigin)
}
