package portal

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/helixflow/helixflow/internal/wire"
)

// credentialRoutes: the organization's clients and API keys.
func (p *Portal) credentialRoutes() []route {
	pp := wire.PortalPrefix + "credentials"
	return []route{
		{pattern: "GET " + pp, signedIn: true, handler: p.credentialsPage},
		{pattern: "POST " + pp + "/org", signedIn: true, handler: p.createOrgPost},
		{pattern: "POST " + pp + "/clients", signedIn: true, handler: p.createClientPost},
		{pattern: "POST " + pp + "/clients/rotate", signedIn: true, handler: p.rotateClientPost},
		{pattern: "POST " + pp + "/clients/delete", signedIn: true, handler: p.deleteClientPost},
		{pattern: "POST " + pp + "/keys", signedIn: true, handler: p.createKeyPost},
		{pattern: "POST " + pp + "/keys/rotate", signedIn: true, handler: p.rotateKeyPost},
		{pattern: "POST " + pp + "/keys/revoke", signedIn: true, handler: p.revokeKeyPost},
	}
}

// credClient and credKey are the API's client and API key, as listed.
type credClient struct {
	ClientID string   `json:"client_id"`
	Secret   string   `json:"client_secret"`
	Name     string   `json:"name"`
	Scopes   []string `json:"scopes"`
	Models   []string `json:"models"`
	Plan     string   `json:"plan"`
	Enabled  bool     `json:"enabled"`
}

type credKey struct {
	ID         string     `json:"id"`
	Key        string     `json:"key"`
	Prefix     string     `json:"prefix"`
	ClientID   string     `json:"client_id"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	UseCount   int64      `json:"use_count"`
	RevokedAt  *time.Time `json:"revoked_at"`
	Replaces   string     `json:"replaces"`
}

// keyRow is an API key as the page shows it.
type keyRow struct {
	credKey
	Expires, LastUsed, Revoked string
}

// secretShown is a secret shown once, right after it was made.
type secretShown struct {
	What, ClientID, Value string
}

// clientForm and keyForm keep a refused form's values.
type clientForm struct {
	Name, Models, Plan string
	Scopes             []string
}

type keyForm struct{ ClientID, Name, ExpiresIn string }

// credentialsData is the credentials page's.
type credentialsData struct {
	AllowedScopes, AllowedPlans []string
	MaxClients, MaxAPIKeys      int
	Clients                     []credClient
	Keys                        []keyRow
	Secret                      *secretShown
	Client                      clientForm
	Key                         keyForm
	OrgName                     string
}

// keyLifetimes are the API key lifetimes the form offers (Go durations
// the API takes; "" never expires).
var keyLifetimes = []struct{ Value, Label string }{
	{"", "Never"}, {"720h", "30 days"}, {"2160h", "90 days"}, {"8760h", "1 year"},
}

// KeyLifetimes is for the template.
func (credentialsData) KeyLifetimes() []struct{ Value, Label string } { return keyLifetimes }

// Chosen says whether scope is ticked in the refused client form.
func (d credentialsData) Chosen(scope string) bool { return slices.Contains(d.Client.Scopes, scope) }

func orgPath(v *View, rest string) string {
	return "/api/v1/orgs/" + url.PathEscape(v.Org.ID) + rest
}

// credentialsView renders the page for v.Org with d's secret and form
// values (d may be nil).
func (p *Portal) credentialsView(w http.ResponseWriter, r *http.Request, v *View, status int, d *credentialsData) {
	if d == nil {
		d = &credentialsData{}
	}
	v.Title, v.Nav, v.Data = "Credentials", "credentials", d
	if v.Org == nil {
		p.render(w, status, "credentials", v)
		return
	}
	var org struct {
		Name   string `json:"name"`
		Policy struct {
			AllowedPlans  []string `json:"allowed_plans"`
			AllowedScopes []string `json:"allowed_scopes"`
			MaxAPIKeys    int      `json:"max_api_keys"`
			MaxClients    int      `json:"max_clients"`
		} `json:"policy"`
	}
	var clients struct {
		Clients []credClient `json:"clients"`
	}
	var keys struct {
		Keys []credKey `json:"apikeys"`
	}
	for _, c := range []struct {
		path string
		out  any
	}{{orgPath(v, ""), &org}, {orgPath(v, "/clients"), &clients}, {orgPath(v, "/apikeys"), &keys}} {
		if err := p.api(nil, r, v, http.MethodGet, c.path, nil, c.out); err != nil {
			p.apiFailure(w, r, v, err)
			return
		}
	}
	d.OrgName = org.Name
	d.AllowedScopes, d.AllowedPlans = org.Policy.AllowedScopes, org.Policy.AllowedPlans
	d.MaxClients, d.MaxAPIKeys = org.Policy.MaxClients, org.Policy.MaxAPIKeys
	d.Clients = clients.Clients
	for _, k := range keys.Keys {
		row := keyRow{credKey: k, Expires: "never"}
		if k.ExpiresAt != nil {
			row.Expires = when(*k.ExpiresAt)
		}
		if k.LastUsedAt != nil {
			row.LastUsed = when(*k.LastUsedAt)
		}
		if k.RevokedAt != nil {
			row.Revoked = when(*k.RevokedAt)
		}
		d.Keys = append(d.Keys, row)
	}
	p.render(w, status, "credentials", v)
}

func (p *Portal) credentialsPage(w http.ResponseWriter, r *http.Request, v *View) {
	v.Notice = noticeOf(r)
	p.credentialsView(w, r, v, http.StatusOK, nil)
}

// needID answers a change that names no client or key.
func (p *Portal) needID(w http.ResponseWriter, r *http.Request, v *View) (string, bool) {
	id := formText(r, "id")
	if id != "" && !strings.ContainsAny(id, "/?#") {
		return id, false
	}
	v.Error = "Choose the client or key to change."
	p.credentialsView(w, r, v, http.StatusBadRequest, nil)
	return "", true
}

// needOrg answers a change without an organization to make it in.
func (p *Portal) needOrg(w http.ResponseWriter, r *http.Request, v *View) bool {
	if v.Org != nil {
		return false
	}
	v.Error = "You are not a member of an organization: create one first."
	p.credentialsView(w, r, v, http.StatusBadRequest, nil)
	return true
}

func (p *Portal) createOrgPost(w http.ResponseWriter, r *http.Request, v *View) {
	name := formText(r, "name")
	if name == "" {
		v.Error = "Enter a name for the organization."
		p.credentialsView(w, r, v, http.StatusBadRequest, nil)
		return
	}
	var org struct {
		ID string `json:"id"`
	}
	if err := p.api(nil, r, v, http.MethodPost, "/api/v1/orgs", map[string]string{"name": name}, &org); err != nil {
		p.credentialsView(w, r, v, p.failed(v, err), nil)
		return
	}
	done(w, r, &View{Org: &OrgRef{ID: org.ID}}, "credentials", "org-created")
}

// splitList splits a comma- or space-separated field into its items.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

func (p *Portal) createClientPost(w http.ResponseWriter, r *http.Request, v *View) {
	if p.needOrg(w, r, v) {
		return
	}
	f := clientForm{Name: formText(r, "name"), Models: formText(r, "models"), Plan: formText(r, "plan"), Scopes: r.PostForm["scopes"]}
	d := &credentialsData{Client: f}
	switch {
	case f.Name == "":
		v.Error = "Enter a name for the client."
	case len(f.Scopes) == 0:
		v.Error = "Choose at least one scope for the client."
	}
	if v.Error != "" {
		p.credentialsView(w, r, v, http.StatusBadRequest, d)
		return
	}
	body := map[string]any{"name": f.Name, "scopes": f.Scopes}
	if m := splitList(f.Models); len(m) > 0 {
		body["models"] = m
	}
	if f.Plan != "" {
		body["plan"] = f.Plan
	}
	var c credClient
	if err := p.api(nil, r, v, http.MethodPost, orgPath(v, "/clients"), body, &c); err != nil {
		p.credentialsView(w, r, v, p.failed(v, err), d)
		return
	}
	v.Notice = "The client " + c.Name + " is created. Copy its secret now: it is shown only once."
	p.credentialsView(w, r, v, http.StatusCreated, &credentialsData{Secret: &secretShown{What: "Client secret", ClientID: c.ClientID, Value: c.Secret}})
}

func (p *Portal) rotateClientPost(w http.ResponseWriter, r *http.Request, v *View) {
	if p.needOrg(w, r, v) {
		return
	}
	id, bad := p.needID(w, r, v)
	if bad {
		return
	}
	var c credClient
	if err := p.api(nil, r, v, http.MethodPost, orgPath(v, "/clients/"+url.PathEscape(id)+"/rotate-secret"), nil, &c); err != nil {
		p.credentialsView(w, r, v, p.failed(v, err), nil)
		return
	}
	v.Notice = "The client " + c.Name + " has a new secret; the old one no longer works. Copy it now: it is shown only once."
	p.credentialsView(w, r, v, http.StatusOK, &credentialsData{Secret: &secretShown{What: "Client secret", ClientID: c.ClientID, Value: c.Secret}})
}

func (p *Portal) deleteClientPost(w http.ResponseWriter, r *http.Request, v *View) {
	if p.needOrg(w, r, v) {
		return
	}
	id, bad := p.needID(w, r, v)
	if bad {
		return
	}
	if err := p.api(nil, r, v, http.MethodDelete, orgPath(v, "/clients/"+url.PathEscape(id)), nil, nil); err != nil {
		p.credentialsView(w, r, v, p.failed(v, err), nil)
		return
	}
	done(w, r, v, "credentials", "client-deleted")
}

func (p *Portal) createKeyPost(w http.ResponseWriter, r *http.Request, v *View) {
	if p.needOrg(w, r, v) {
		return
	}
	f := keyForm{ClientID: formText(r, "client_id"), Name: formText(r, "name"), ExpiresIn: formText(r, "expires_in")}
	d := &credentialsData{Key: f}
	switch {
	case f.ClientID == "":
		v.Error = "Choose the client the key is for (create a client first if there is none)."
	case f.Name == "":
		v.Error = "Enter a name for the key."
	}
	if v.Error != "" {
		p.credentialsView(w, r, v, http.StatusBadRequest, d)
		return
	}
	body := map[string]string{"client_id": f.ClientID, "name": f.Name}
	if f.ExpiresIn != "" {
		body["expires_in"] = f.ExpiresIn
	}
	var k credKey
	if err := p.api(nil, r, v, http.MethodPost, orgPath(v, "/apikeys"), body, &k); err != nil {
		p.credentialsView(w, r, v, p.failed(v, err), d)
		return
	}
	v.Notice = "The API key " + k.Name + " is created. Copy it now: it is shown only once."
	p.credentialsView(w, r, v, http.StatusCreated, &credentialsData{Secret: &secretShown{What: "API key", ClientID: k.ClientID, Value: k.Key}})
}

func (p *Portal) rotateKeyPost(w http.ResponseWriter, r *http.Request, v *View) {
	if p.needOrg(w, r, v) {
		return
	}
	id, bad := p.needID(w, r, v)
	if bad {
		return
	}
	body := map[string]string{}
	if o := formText(r, "overlap"); o != "" {
		body["overlap"] = o
	}
	var k credKey
	if err := p.api(nil, r, v, http.MethodPost, orgPath(v, "/apikeys/"+url.PathEscape(id)+"/rotate"), body, &k); err != nil {
		p.credentialsView(w, r, v, p.failed(v, err), nil)
		return
	}
	v.Notice = "The API key " + k.Name + " is rotated: the old key keeps working for 24 hours. Copy the new one now: it is shown only once."
	p.credentialsView(w, r, v, http.StatusCreated, &credentialsData{Secret: &secretShown{What: "API key", ClientID: k.ClientID, Value: k.Key}})
}

func (p *Portal) revokeKeyPost(w http.ResponseWriter, r *http.Request, v *View) {
	if p.needOrg(w, r, v) {
		return
	}
	id, bad := p.needID(w, r, v)
	if bad {
		return
	}
	if err := p.api(nil, r, v, http.MethodDelete, orgPath(v, "/apikeys/"+url.PathEscape(id)), nil, nil); err != nil {
		p.credentialsView(w, r, v, p.failed(v, err), nil)
		return
	}
	done(w, r, v, "credentials", "key-revoked")
}
