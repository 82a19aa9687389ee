package portal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/internal/wire"
)

// The admin pages are for platform admins. They call the admin API
// (Config.Admin) in process with admin.WithPortalUser, so the admin API
// itself decides, at each call, that the signed-in person is a platform
// admin, and audits what they do as "user:<id>" through the portal.

// adminData is every admin page's: the section and its own data.
type adminData struct {
	Off     bool // no admin API on this server
	Section string
	Orgs    []admin.OrgView
	Users   []admin.UserView
	// NextUsers is the next page's "after" (a user id); "" on the last.
	NextUsers string
	Clients   []admin.ClientView
	Plans     []string
	Audit     []audit.Row
	// AuditFilter is the audit page's query; NextAudit its next page's
	// "before" (a seq), 0 on the last.
	AuditFilter map[string]string
	NextAudit   int64
}

// adminLink is an entry of the administration's own navigation.
type adminLink struct {
	Href, Label string
	Current     bool
}

// Nav is the administration's navigation, the current section marked.
func (d *adminData) Nav() []adminLink {
	links := []adminLink{{"", "Overview", false}, {"orgs", "Organizations", false}, {"users", "People", false},
		{"clients", "Clients and plans", false}, {"audit", "Audit trail", false}}
	for i := range links {
		links[i].Current = links[i].Href == d.Section
		if links[i].Href == "" {
			links[i].Href = wire.PortalPrefix + "admin"
		} else {
			links[i].Href = wire.PortalPrefix + "admin/" + links[i].Href
		}
	}
	return links
}

// adminPageSize is how many users or audit rows a page shows.
const adminPageSize = 100

// adminNotices are the notices a change's redirect may name (?done=):
// fixed texts, so that a link cannot put words on the page.
var adminNotices = map[string]string{
	"platform-admin": "The platform-admin flag was changed.",
	"plan":           "The client's plan was changed.",
}

func (p *Portal) adminRoutes() []route {
	pre := wire.PortalPrefix + "admin"
	return []route{
		{pattern: "GET " + pre, signedIn: true, handler: p.adminPage("", p.adminIndex)},
		{pattern: "GET " + pre + "/orgs", signedIn: true, handler: p.adminPage("orgs", p.adminOrgs)},
		{pattern: "GET " + pre + "/users", signedIn: true, handler: p.adminPage("users", p.adminUsers)},
		{pattern: "POST " + pre + "/users/{id}/platform-admin", signedIn: true, handler: p.adminPage("users", p.adminSetPlatformAdmin)},
		{pattern: "GET " + pre + "/clients", signedIn: true, handler: p.adminPage("clients", p.adminClients)},
		{pattern: "POST " + pre + "/clients/{id}/plan", signedIn: true, handler: p.adminPage("clients", p.adminSetPlan)},
		{pattern: "GET " + pre + "/audit", signedIn: true, handler: p.adminPage("audit", p.adminAudit)},
	}
}

// adminPage wraps an admin section: platform admins only (the admin API
// checks again at each call), and a page saying so when the admin API is
// off.
func (p *Portal) adminPage(section string, h func(w http.ResponseWriter, r *http.Request, v *View, d *adminData) (string, int)) pageHandler {
	return func(w http.ResponseWriter, r *http.Request, v *View) {
		v.Title, v.Nav = "Administration", "admin"
		if !v.Person.PlatformAdmin {
			p.fail(w, r, v, http.StatusForbidden, "The administration pages are for platform admins.")
			return
		}
		d := &adminData{Section: section}
		v.Data = d
		if p.cfg.Admin == nil {
			d.Off = true
			p.render(w, http.StatusOK, "admin", v)
			return
		}
		v.Notice = adminNotices[r.URL.Query().Get("done")]
		page, status := h(w, r, v, d)
		if page != "" {
			p.render(w, status, page, v)
		}
	}
}

func (p *Portal) adminIndex(_ http.ResponseWriter, _ *http.Request, _ *View, _ *adminData) (string, int) {
	return "admin", http.StatusOK
}

func (p *Portal) adminOrgs(w http.ResponseWriter, r *http.Request, v *View, d *adminData) (string, int) {
	v.Title = "Organizations · Administration"
	if err := p.adminAPI(r, v, http.MethodGet, "/admin/v1/orgs", nil, &d.Orgs); err != nil {
		p.apiFailure(w, r, v, err)
		return "", 0
	}
	return "admin-orgs", http.StatusOK
}

func (p *Portal) adminUsers(w http.ResponseWriter, r *http.Request, v *View, d *adminData) (string, int) {
	v.Title = "People · Administration"
	q := url.Values{"limit": {strconv.Itoa(adminPageSize)}}
	if after := r.URL.Query().Get("after"); after != "" {
		q.Set("after", after)
	}
	if err := p.adminAPI(r, v, http.MethodGet, "/admin/v1/users?"+q.Encode(), nil, &d.Users); err != nil {
		if e, ok := asAPIError(err); ok && e.Status == http.StatusBadRequest {
			v.Error = e.Description
			return "admin-users", http.StatusBadRequest
		}
		p.apiFailure(w, r, v, err)
		return "", 0
	}
	if len(d.Users) == adminPageSize {
		d.NextUsers = d.Users[len(d.Users)-1].ID
	}
	return "admin-users", http.StatusOK
}

func (p *Portal) adminSetPlatformAdmin(w http.ResponseWriter, r *http.Request, v *View, d *adminData) (string, int) {
	var on bool
	switch r.PostForm.Get("platform_admin") {
	case "true":
		on = true
	case "false":
	default:
		v.Error = "platform_admin: true or false"
		return p.adminUsersAgain(w, r, v, d, http.StatusBadRequest)
	}
	id := r.PathValue("id")
	if id == v.Person.ID && !on {
		// Not a rule of the API, a guard of the page: withdrawing one's
		// own flag here locks one out of this very page.
		v.Error = "You cannot withdraw your own platform-admin flag here; another platform admin (or helixctl with the admin token) can."
		return p.adminUsersAgain(w, r, v, d, http.StatusBadRequest)
	}
	err := p.adminAPI(r, v, http.MethodPatch, "/admin/v1/users/"+url.PathEscape(id), admin.PlatformAdminRequest{PlatformAdmin: &on}, nil)
	if e, ok := asAPIError(err); ok && e.Status < 500 {
		v.Error = e.Description
		return p.adminUsersAgain(w, r, v, d, e.Status)
	}
	if err != nil {
		p.apiFailure(w, r, v, err)
		return "", 0
	}
	http.Redirect(w, r, wire.PortalPrefix+"admin/users?done=platform-admin", http.StatusSeeOther)
	return "", 0
}

// adminUsersAgain shows the people's list after a refused change.
func (p *Portal) adminUsersAgain(w http.ResponseWriter, r *http.Request, v *View, d *adminData, status int) (string, int) {
	page, st := p.adminUsers(w, r, v, d)
	if page == "" || st != http.StatusOK {
		return page, st
	}
	return page, status
}

func (p *Portal) adminClients(w http.ResponseWriter, r *http.Request, v *View, d *adminData) (string, int) {
	v.Title = "Clients and plans · Administration"
	if err := p.adminAPI(r, v, http.MethodGet, "/admin/v1/clients", nil, &d.Clients); err != nil {
		p.apiFailure(w, r, v, err)
		return "", 0
	}
	if p.cfg.Plans != nil {
		for _, pl := range p.cfg.Plans() {
			d.Plans = append(d.Plans, pl.Name)
		}
	}
	return "admin-clients", http.StatusOK
}

func (p *Portal) adminSetPlan(w http.ResponseWriter, r *http.Request, v *View, d *adminData) (string, int) {
	plan := r.PostForm.Get("plan")
	id := r.PathValue("id")
	err := p.adminAPI(r, v, http.MethodPatch, "/admin/v1/clients/"+url.PathEscape(id), admin.ClientRequest{Plan: &plan}, nil)
	if e, ok := asAPIError(err); ok && e.Status < 500 {
		v.Error = e.Description
		page, st := p.adminClients(w, r, v, d)
		if page != "" && st == http.StatusOK {
			st = e.Status
		}
		return page, st
	}
	if err != nil {
		p.apiFailure(w, r, v, err)
		return "", 0
	}
	http.Redirect(w, r, wire.PortalPrefix+"admin/clients?done=plan", http.StatusSeeOther)
	return "", 0
}

// auditFilters are the audit page's query parameters, passed on to the
// admin API, which checks them.
var auditFilters = []string{"actor", "action", "target", "since", "until", "before"}

func (p *Portal) adminAudit(w http.ResponseWriter, r *http.Request, v *View, d *adminData) (string, int) {
	v.Title = "Audit trail · Administration"
	q := url.Values{"limit": {strconv.Itoa(adminPageSize)}}
	d.AuditFilter = map[string]string{}
	for _, f := range auditFilters {
		if val := strings.TrimSpace(r.URL.Query().Get(f)); val != "" {
			d.AuditFilter[f] = val
			q.Set(f, val)
		}
	}
	if err := p.adminAPI(r, v, http.MethodGet, "/admin/v1/audit?"+q.Encode(), nil, &d.Audit); err != nil {
		if e, ok := asAPIError(err); ok && e.Status == http.StatusBadRequest {
			v.Error = "The filters were not accepted: " + e.Description
			return "admin-audit", http.StatusBadRequest
		}
		p.apiFailure(w, r, v, err)
		return "", 0
	}
	if len(d.Audit) == adminPageSize {
		d.NextAudit = d.Audit[len(d.Audit)-1].Seq
	}
	return "admin-audit", http.StatusOK
}

// NextAuditLink is the audit page's next page, with its filters.
func (d *adminData) NextAuditLink() string {
	q := url.Values{}
	for k, val := range d.AuditFilter {
		q.Set(k, val)
	}
	q.Set("before", strconv.FormatInt(d.NextAudit, 10))
	return wire.PortalPrefix + "admin/audit?" + q.Encode()
}

// adminAPI calls the admin API in process for the signed-in person, as
// p.api calls the JSON API: the answer into out, a non-2xx answer an
// *APIError (the admin API's {"error": "..."} is its description).
func (p *Portal) adminAPI(r *http.Request, v *View, method, path string, in, out any) error {
	var body io.Reader = http.NoBody
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("portal: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	ctx := admin.WithPortalUser(r.Context(), v.principal.UserID)
	sub, err := http.NewRequestWithContext(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("portal: %s %s: %w", method, path, err)
	}
	sub.RemoteAddr = r.RemoteAddr
	for _, h := range []string{"User-Agent", "X-Forwarded-For"} {
		if val := r.Header.Values(h); len(val) > 0 {
			sub.Header[h] = val
		}
	}
	sub.Header.Set("Accept", "application/json")
	if in != nil {
		sub.Header.Set("Content-Type", "application/json")
	}
	rec := newRecorder()
	p.cfg.Admin.ServeHTTP(rec, sub)
	if rec.status < 200 || rec.status > 299 {
		e := &APIError{Status: rec.status}
		var eb struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &eb) == nil && eb.Error != "" {
			e.Description = eb.Error
		} else if e.Description = strings.TrimSpace(rec.body.String()); e.Description == "" {
			e.Description = http.StatusText(rec.status)
		}
		return e
	}
	if rec.overflow {
		return fmt.Errorf("portal: %s %s: the answer is over %d bytes", method, path, maxAnswerBytes)
	}
	if out != nil {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("portal: decode %s %s: %w", method, path, err)
		}
	}
	return nil
}
