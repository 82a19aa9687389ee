package orgs

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/webapi"
)

// ClientView is an organization's client; ClientSecret is set only in the
// response that created or rotated it.
type ClientView struct {
	admin.ClientView
	OrgID     string `json:"org_id"`
	CreatedBy string `json:"created_by,omitempty"`
}

func clientView(c *store.Client) ClientView {
	return ClientView{ClientView: admin.ViewClient(c), OrgID: c.OrgID, CreatedBy: c.CreatedBy}
}

// ClientRequest creates or (with only some fields set) changes an
// organization's client. Organizations' clients are confidential
// client-credentials clients.
type ClientRequest struct {
	Name     *string   `json:"name"`
	Scopes   *[]string `json:"scopes"`
	Models   *[]string `json:"models"`
	Audience *[]string `json:"audience"`
	Plan     *string   `json:"plan"`
	Enabled  *bool     `json:"enabled"`
}

// KeyView is an organization's API key with its use: last_used_at and the
// uses of the last UsageDays days. Key is set only in the response that
// created it.
type KeyView struct {
	admin.APIKeyView
	CreatedBy string     `json:"created_by,omitempty"`
	Replaces  string     `json:"replaces,omitempty"`
	Usage     []DayCount `json:"usage"`
}

// DayCount is one UTC day's uses.
type DayCount struct {
	Day   string `json:"day"` // YYYY-MM-DD
	Count int64  `json:"count"`
}

// RotateRequest rotates an API key: the new key works at once, the old one
// until Overlap (a Go duration, at most 30 days; default 24h; "0s" ends
// it now) has passed. ExpiresIn is the new key's lifetime (default: the
// old key's).
type RotateRequest struct {
	Overlap   string `json:"overlap"`
	ExpiresIn string `json:"expires_in"`
}

// policyError is a policy refusal: 403 naming what is outside.
type policyError struct{ msg string }

func (e *policyError) Error() string { return e.msg }

// checkPlan refuses a plan outside the organization's policy, naming it.
// A client without a plan is held to the gateway's default plan (Check
// applies it), so that is what must be allowed.
func (a *API) checkPlan(o *store.Org, plan string) error {
	if plan == "" {
		plan = a.cfg.Plans.DefaultPlan()
	}
	if plan != "" && !slices.Contains(o.AllowedPlans, plan) {
		return &policyError{fmt.Sprintf("plan: %q is outside the organization's policy (allowed: %s)", plan, list(o.AllowedPlans))}
	}
	return nil
}

// checkScopes refuses a scope the policy's scopes do not grant (by Check's
// rule: models:infer grants models:<m>:infer), naming it.
func checkScopes(o *store.Org, scopes []string) error {
	for _, s := range scopes {
		if !check.ScopeGranted(s, o.AllowedScopes) {
			return &policyError{fmt.Sprintf("scopes: %q is outside the organization's policy (allowed: %s)", s, list(o.AllowedScopes))}
		}
	}
	return nil
}

// checkPolicy is checkPlan, then checkScopes.
func (a *API) checkPolicy(o *store.Org, plan string, scopes []string) error {
	if err := a.checkPlan(o, plan); err != nil {
		return err
	}
	return checkScopes(o, scopes)
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// denyPolicy answers and records a policy refusal.
func (c *call) denyPolicy(w http.ResponseWriter, action, target string, err error) {
	c.record(action, target, audit.ResultDenied, map[string]string{"reason": err.Error()})
	webapi.WriteError(w, http.StatusForbidden, webapi.CodeForbidden, err.Error())
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.read", store.RoleViewer)
	if !ok {
		return
	}
	cs, err := a.cfg.Store.ListOrgClients(r.Context(), c.orgID)
	if err != nil {
		a.storeError(w, "list clients", err)
		return
	}
	out := make([]ClientView, 0, len(cs))
	for i := range cs {
		out = append(out, clientView(&cs[i]))
	}
	webapi.WriteJSON(w, http.StatusOK, map[string]any{"clients": out})
}

// orgClient reads the path's client, which must be the call's
// organization's: another's is 404, like an unknown one.
func (a *API) orgClient(w http.ResponseWriter, c *call) (*store.Client, bool) {
	cl, err := a.cfg.Store.GetClient(c.r.Context(), c.r.PathValue("id"))
	if err == nil && cl.OrgID != c.orgID {
		err = store.ErrNotFound
	}
	if err != nil {
		a.storeError(w, "client", err)
		return nil, false
	}
	return cl, true
}

func (r *ClientRequest) admin() admin.ClientRequest {
	return admin.ClientRequest{Name: r.Name, Scopes: r.Scopes, Models: r.Models, Audience: r.Audience, Plan: r.Plan, Enabled: r.Enabled}
}

func (a *API) createClient(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.client.create", store.RoleMember)
	if !ok {
		return
	}
	var req ClientRequest
	if !webapi.Decode(w, r, &req) {
		return
	}
	o, err := a.cfg.Store.GetOrg(r.Context(), c.orgID)
	if err != nil {
		a.storeError(w, "organization", err)
		return
	}
	cl := &store.Client{Plan: a.cfg.Plans.DefaultPlan(), Models: []string{}, Enabled: true, OrgID: c.orgID, CreatedBy: c.userID}
	ar := req.admin()
	if err := ar.Apply(cl, a.cfg.Plans); err != nil {
		badRequest(w, err)
		return
	}
	if len(cl.Scopes) == 0 {
		badRequest(w, errors.New("scopes: at least one scope is required"))
		return
	}
	if err := a.checkPolicy(o, cl.Plan, cl.Scopes); err != nil {
		c.denyPolicy(w, "org.client.create", "org:"+c.orgID, err)
		return
	}
	sec, err := admin.NewClientCredentials(cl, a.cfg.Hasher)
	if err != nil {
		a.storeError(w, "generate client credentials", err)
		return
	}
	id := cl.ID
	if err := a.cfg.Store.CreateOrgClient(r.Context(), cl); err != nil {
		c.record("org.client.create", "client:"+id, audit.ResultFailure, nil)
		a.storeError(w, "create client", err)
		return
	}
	c.record("org.client.create", "client:"+id, audit.ResultSuccess, map[string]string{"plan": cl.Plan, "scopes": strings.Join(cl.Scopes, " ")})
	v := clientView(cl)
	v.ClientSecret = sec
	webapi.WriteJSON(w, http.StatusCreated, v)
}

func (a *API) getClient(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.read", store.RoleViewer)
	if !ok {
		return
	}
	cl, ok := a.orgClient(w, c)
	if !ok {
		return
	}
	webapi.WriteJSON(w, http.StatusOK, clientView(cl))
}

func (a *API) updateClient(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.client.update", store.RoleMember)
	if !ok {
		return
	}
	var req ClientRequest
	if !webapi.Decode(w, r, &req) {
		return
	}
	cl, ok := a.orgClient(w, c)
	if !ok {
		return
	}
	ar := req.admin()
	if err := ar.Apply(cl, a.cfg.Plans); err != nil {
		badRequest(w, err)
		return
	}
	target := "client:" + cl.ID
	// Only what changes is held to the policy: a client made before the
	// policy narrowed can still be renamed or disabled.
	if req.Plan != nil || req.Scopes != nil {
		o, err := a.cfg.Store.GetOrg(r.Context(), c.orgID)
		if err != nil {
			a.storeError(w, "organization", err)
			return
		}
		if req.Plan != nil {
			err = a.checkPlan(o, cl.Plan)
		}
		if req.Scopes != nil && err == nil {
			err = checkScopes(o, cl.Scopes)
		}
		if err != nil {
			c.denyPolicy(w, "org.client.update", target, err)
			return
		}
	}
	if err := a.cfg.Store.UpdateClient(r.Context(), cl); err != nil {
		c.record("org.client.update", target, audit.ResultFailure, nil)
		a.storeError(w, "update client", err)
		return
	}
	c.record("org.client.update", target, audit.ResultSuccess,
		map[string]string{"plan": cl.Plan, "scopes": strings.Join(cl.Scopes, " "), "enabled": fmt.Sprint(cl.Enabled)})
	webapi.WriteJSON(w, http.StatusOK, clientView(cl))
}

func (a *API) deleteClient(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.client.delete", store.RoleMember)
	if !ok {
		return
	}
	cl, ok := a.orgClient(w, c)
	if !ok {
		return
	}
	target := "client:" + cl.ID
	if err := a.cfg.Store.DeleteClient(r.Context(), cl.ID); err != nil {
		c.record("org.client.delete", target, audit.ResultFailure, nil)
		a.storeError(w, "delete client", err)
		return
	}
	c.record("org.client.delete", target, audit.ResultSuccess, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.client.rotate_secret", store.RoleMember)
	if !ok {
		return
	}
	cl, ok := a.orgClient(w, c)
	if !ok {
		return
	}
	target := "client:" + cl.ID
	sec, err := secret.NewClientSecret()
	if err != nil {
		a.storeError(w, "generate client secret", err)
		return
	}
	if err := a.cfg.Store.SetClientSecret(r.Context(), cl.ID, a.cfg.Hasher.Hash(sec)); err != nil {
		c.record("org.client.rotate_secret", target, audit.ResultFailure, nil)
		a.storeError(w, "rotate client secret", err)
		return
	}
	c.record("org.client.rotate_secret", target, audit.ResultSuccess, nil)
	// The old secret no longer works: the new one must reach the caller
	// even if the read-back fails.
	if back, err := a.cfg.Store.GetClient(r.Context(), cl.ID); err == nil {
		cl = back
	}
	v := clientView(cl)
	v.ClientSecret = sec
	webapi.WriteJSON(w, http.StatusOK, v)
}

func (a *API) keyViews(r *http.Request, ks []store.APIKey) ([]KeyView, error) {
	ids := make([]string, 0, len(ks))
	for _, k := range ks {
		ids = append(ids, k.ID)
	}
	since := a.cfg.Now().UTC().AddDate(0, 0, -(UsageDays - 1))
	usage := map[string][]store.DayCount{}
	if len(ids) > 0 {
		var err error
		if usage, err = a.cfg.Store.APIKeyUsage(r.Context(), ids, since); err != nil {
			return nil, err
		}
	}
	out := make([]KeyView, 0, len(ks))
	for i := range ks {
		out = append(out, keyView(&ks[i], usage[ks[i].ID]))
	}
	return out, nil
}

func keyView(k *store.APIKey, days []store.DayCount) KeyView {
	v := KeyView{APIKeyView: admin.ViewAPIKey(k), CreatedBy: k.CreatedBy, Replaces: k.Replaces, Usage: make([]DayCount, 0, len(days))}
	for _, d := range days {
		v.Usage = append(v.Usage, DayCount{Day: d.Day.Format(time.DateOnly), Count: d.Count})
	}
	return v
}

func (a *API) listAPIKeys(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.read", store.RoleViewer)
	if !ok {
		return
	}
	ks, err := a.cfg.Store.ListOrgAPIKeys(r.Context(), c.orgID)
	if err != nil {
		a.storeError(w, "list API keys", err)
		return
	}
	out, err := a.keyViews(r, ks)
	if err != nil {
		a.storeError(w, "API key usage", err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, map[string]any{"apikeys": out})
}

func (a *API) createAPIKey(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.apikey.create", store.RoleMember)
	if !ok {
		return
	}
	var req admin.APIKeyRequest
	if !webapi.Decode(w, r, &req) {
		return
	}
	if req.ClientID == "" {
		badRequest(w, errors.New("client_id: required (a client of this organization)"))
		return
	}
	cl, err := a.cfg.Store.GetClient(r.Context(), req.ClientID)
	if err == nil && cl.OrgID != c.orgID {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		badRequest(w, errors.New("client_id: no client of this organization has that id"))
		return
	}
	if err != nil {
		a.storeError(w, "client", err)
		return
	}
	k, err := req.Check(cl, a.cfg.Now())
	if err != nil {
		badRequest(w, err)
		return
	}
	o, err := a.cfg.Store.GetOrg(r.Context(), c.orgID)
	if err != nil {
		a.storeError(w, "organization", err)
		return
	}
	// The client's plan and the key's scopes are held to the policy as it
	// is now (it may have narrowed since the client was made).
	if err := a.checkPolicy(o, cl.Plan, k.Scopes); err != nil {
		c.denyPolicy(w, "org.apikey.create", "client:"+cl.ID, err)
		return
	}
	key, err := admin.NewAPIKeySecret(k, a.cfg.Hasher)
	if err != nil {
		a.storeError(w, "generate API key", err)
		return
	}
	k.CreatedBy = c.userID
	target := "apikey:" + k.ID
	if err := a.cfg.Store.CreateOrgAPIKey(r.Context(), c.orgID, k); err != nil {
		c.record("org.apikey.create", target, audit.ResultFailure, nil)
		a.storeError(w, "create API key", err)
		return
	}
	c.record("org.apikey.create", target, audit.ResultSuccess, map[string]string{"client": "client:" + cl.ID, "scopes": strings.Join(k.Scopes, " ")})
	v := keyView(k, nil)
	v.Key = key
	webapi.WriteJSON(w, http.StatusCreated, v)
}

// orgKey reads the path's API key, which must belong to a client of the
// call's organization: another's is 404, like an unknown one.
func (a *API) orgKey(w http.ResponseWriter, c *call) (*store.APIKey, *store.Client, bool) {
	k, err := a.cfg.Store.GetAPIKey(c.r.Context(), c.r.PathValue("id"))
	var cl *store.Client
	if err == nil {
		cl, err = a.cfg.Store.GetClient(c.r.Context(), k.ClientID)
	}
	if err == nil && cl.OrgID != c.orgID {
		err = store.ErrNotFound
	}
	if err != nil {
		a.storeError(w, "API key", err)
		return nil, nil, false
	}
	return k, cl, true
}

// parseOverlap reads a rotation's overlap: a Go duration from 0 to
// MaxOverlap, DefaultOverlap when empty.
func parseOverlap(s string) (time.Duration, error) {
	if s == "" {
		return DefaultOverlap, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > MaxOverlap {
		return 0, fmt.Errorf("overlap: a Go duration from \"0s\" to %q, e.g. \"24h\"", "720h")
	}
	return d, nil
}

func (a *API) rotateAPIKey(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.apikey.rotate", store.RoleMember)
	if !ok {
		return
	}
	var req RotateRequest
	if !webapi.Decode(w, r, &req) {
		return
	}
	overlap, err := parseOverlap(req.Overlap)
	if err != nil {
		badRequest(w, err)
		return
	}
	old, cl, ok := a.orgKey(w, c)
	if !ok {
		return
	}
	now := a.cfg.Now()
	expiresIn := req.ExpiresIn
	if expiresIn == "" && old.ExpiresAt != nil {
		// The new key keeps the old one's lifetime.
		if life := old.ExpiresAt.Sub(old.CreatedAt); life > 0 {
			expiresIn = life.Round(time.Second).String()
		}
	}
	ar := admin.APIKeyRequest{ClientID: cl.ID, Name: old.Name, Scopes: old.Scopes, ExpiresIn: expiresIn}
	next, err := ar.Check(cl, now)
	if err != nil {
		badRequest(w, err)
		return
	}
	key, err := admin.NewAPIKeySecret(next, a.cfg.Hasher)
	if err != nil {
		a.storeError(w, "generate API key", err)
		return
	}
	next.CreatedBy, next.Replaces = c.userID, old.ID
	target := "apikey:" + old.ID
	if err := a.cfg.Store.RotateAPIKey(r.Context(), c.orgID, next, now.Add(overlap).UTC()); err != nil {
		c.record("org.apikey.rotate", target, audit.ResultFailure, nil)
		a.storeError(w, "rotate API key", err)
		return
	}
	c.record("org.apikey.rotate", target, audit.ResultSuccess, map[string]string{"new": "apikey:" + next.ID, "overlap": overlap.String()})
	v := keyView(next, nil)
	v.Key = key
	webapi.WriteJSON(w, http.StatusCreated, v)
}

func (a *API) revokeAPIKey(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.apikey.revoke", store.RoleMember)
	if !ok {
		return
	}
	k, _, ok := a.orgKey(w, c)
	if !ok {
		return
	}
	target := "apikey:" + k.ID
	if err := a.cfg.Store.RevokeAPIKey(r.Context(), k.ID); err != nil {
		c.record("org.apikey.revoke", target, audit.ResultFailure, nil)
		a.storeError(w, "revoke API key", err)
		return
	}
	c.record("org.apikey.revoke", target, audit.ResultSuccess, nil)
	w.WriteHeader(http.StatusNoContent)
}
