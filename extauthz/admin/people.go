package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/store"
)

// PeopleStore is the part of the database the admin API's people and
// organization endpoints read and change (store.Store has it).
type PeopleStore interface {
	GetUser(ctx context.Context, id string) (*store.User, error)
	GetUserByEmail(ctx context.Context, email string) (*store.User, error)
	ListUsers(ctx context.Context, after string, limit int) ([]store.User, error)
	SetPlatformAdmin(ctx context.Context, id string, admin bool) error
	ListOrgs(ctx context.Context) ([]store.Org, error)
	GetOrg(ctx context.Context, id string) (*store.Org, error)
	CreateOrg(ctx context.Context, o *store.Org, ownerID string) error
	SetOrgPolicy(ctx context.Context, o *store.Org) error
}

// The policy a new organization gets, besides the gateway's default plan.
const (
	DefaultMaxAPIKeys = 10
	DefaultMaxClients = 5
)

// DefaultScopes are the scopes a new organization's clients may have.
var DefaultScopes = []string{check.ScopeInfer, check.ScopeRead}

// NewOrg returns an organization named name with the default policy: the
// gateway's default plan, models:infer and models:read, 10 keys, 5
// clients. The organizations package and the admin API both create with it.
func NewOrg(name string, plans *Plans) (*store.Org, error) {
	name, err := OrgName(name)
	if err != nil {
		return nil, err
	}
	o := &store.Org{Name: name, AllowedScopes: slices.Clone(DefaultScopes), MaxAPIKeys: DefaultMaxAPIKeys, MaxClients: DefaultMaxClients}
	if def := plans.get().def; def != "" {
		o.AllowedPlans = []string{def}
	}
	return o, nil
}

// OrgName checks an organization's name (not blank, at most 200
// characters, no control characters) and returns it trimmed.
func OrgName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", errors.New("name: required")
	}
	if err := checkName("name", name); err != nil {
		return "", err
	}
	return name, nil
}

// DefaultPlan is the plan a new client gets when it names none ("" when
// the gateway has no rate limits).
func (p *Plans) DefaultPlan() string { return p.get().def }

// UserView is a person's account as the admin API shows it.
type UserView struct {
	ID            string     `json:"id"`
	Email         string     `json:"email"`
	EmailVerified bool       `json:"email_verified"`
	DisplayName   string     `json:"display_name"`
	Organization  string     `json:"organization"`
	PlatformAdmin bool       `json:"platform_admin"`
	CreatedAt     time.Time  `json:"created_at"`
	ErasedAt      *time.Time `json:"erased_at,omitempty"`
}

func userView(u *store.User) UserView {
	return UserView{ID: u.ID, Email: u.Email, EmailVerified: u.EmailVerified, DisplayName: u.DisplayName,
		Organization: u.Organization, PlatformAdmin: u.PlatformAdmin, CreatedAt: u.CreatedAt, ErasedAt: u.ErasedAt}
}

// PolicyView is an organization's policy.
type PolicyView struct {
	Plans      []string `json:"allowed_plans"`
	Scopes     []string `json:"allowed_scopes"`
	MaxAPIKeys int      `json:"max_api_keys"`
	MaxClients int      `json:"max_clients"`
}

// OrgView is an organization as both APIs show it.
type OrgView struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Policy    PolicyView `json:"policy"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// ViewOrg returns o's view.
func ViewOrg(o *store.Org) OrgView {
	return OrgView{ID: o.ID, Name: o.Name, Policy: ViewPolicy(o), CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt}
}

// ViewPolicy returns o's policy.
func ViewPolicy(o *store.Org) PolicyView {
	return PolicyView{Plans: nonNil(o.AllowedPlans), Scopes: nonNil(o.AllowedScopes), MaxAPIKeys: o.MaxAPIKeys, MaxClients: o.MaxClients}
}

// PolicyRequest replaces an organization's policy: every field is
// required (PUT), so that a forgotten one is not silently emptied.
type PolicyRequest struct {
	Plans      *[]string `json:"allowed_plans"`
	Scopes     *[]string `json:"allowed_scopes"`
	MaxAPIKeys *int      `json:"max_api_keys"`
	MaxClients *int      `json:"max_clients"`
}

// maxLimit bounds an organization's counts (a typo of 10,000,000 keys is
// refused rather than granted).
const maxLimit = 100000

func (p *PolicyRequest) apply(o *store.Org, plans *planSet) error {
	switch {
	case p.Plans == nil:
		return errors.New("allowed_plans: required (a list of the gateway's plans, [] for none)")
	case p.Scopes == nil:
		return errors.New("allowed_scopes: required")
	case p.MaxAPIKeys == nil:
		return errors.New("max_api_keys: required")
	case p.MaxClients == nil:
		return errors.New("max_clients: required")
	}
	for _, pl := range *p.Plans {
		if err := plans.check(pl); err != nil {
			return fmt.Errorf("allowed_plans: %w", err)
		}
	}
	if len(*p.Scopes) > 0 {
		if err := checkScopes("allowed_scopes", *p.Scopes); err != nil {
			return err
		}
	}
	if *p.MaxAPIKeys < 0 || *p.MaxAPIKeys > maxLimit {
		return fmt.Errorf("max_api_keys: between 0 and %d", maxLimit)
	}
	if *p.MaxClients < 0 || *p.MaxClients > maxLimit {
		return fmt.Errorf("max_clients: between 0 and %d", maxLimit)
	}
	o.AllowedPlans = slices.Compact(slices.Sorted(slices.Values(*p.Plans)))
	o.AllowedScopes = slices.Compact(slices.Sorted(slices.Values(*p.Scopes)))
	o.MaxAPIKeys, o.MaxClients = *p.MaxAPIKeys, *p.MaxClients
	return nil
}

// OrgRequest creates an organization: Owner is the user id or email of
// an existing, verified user who becomes its owner.
type OrgRequest struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
}

// PlatformAdminRequest grants or withdraws the platform-admin flag.
type PlatformAdminRequest struct {
	PlatformAdmin *bool `json:"platform_admin"`
}

func (a *api) people(w http.ResponseWriter) bool {
	if a.cfg.People == nil {
		writeError(w, http.StatusNotImplemented, "people and organizations are not available on this server")
		return false
	}
	return true
}

// maxUsersPage bounds one page of GET /admin/v1/users.
const maxUsersPage = 1000

func (a *api) listUsers(w http.ResponseWriter, r *http.Request) {
	if !a.people(w) {
		return
	}
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxUsersPage {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: a number from 1 to %d", maxUsersPage))
			return
		}
		limit = n
	}
	us, err := a.cfg.People.ListUsers(r.Context(), q.Get("after"), limit)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusBadRequest, "after: a user id")
		return
	}
	if err != nil {
		a.storeError(w, "list users", err)
		return
	}
	out := make([]UserView, 0, len(us))
	for i := range us {
		out = append(out, userView(&us[i]))
	}
	a.audit(r, "admin.users.list", "", audit.ResultSuccess, nil)
	writeJSON(w, http.StatusOK, out)
}

func (a *api) getUser(w http.ResponseWriter, r *http.Request) {
	if !a.people(w) {
		return
	}
	u, err := a.cfg.People.GetUser(r.Context(), r.PathValue("id"))
	if err != nil {
		a.storeError(w, "get user", err)
		return
	}
	a.audit(r, "admin.users.get", "user:"+u.ID, audit.ResultSuccess, nil)
	writeJSON(w, http.StatusOK, userView(u))
}

func (a *api) updateUser(w http.ResponseWriter, r *http.Request) {
	if !a.people(w) {
		return
	}
	var req PlatformAdminRequest
	if !decode(w, r, &req) {
		return
	}
	if req.PlatformAdmin == nil {
		writeError(w, http.StatusBadRequest, "platform_admin: required (true or false)")
		return
	}
	id := r.PathValue("id")
	target := "user:" + id
	if err := a.cfg.People.SetPlatformAdmin(r.Context(), id, *req.PlatformAdmin); err != nil {
		a.audit(r, "admin.users.set_platform_admin", target, audit.ResultFailure, nil)
		a.storeError(w, "update user", err)
		return
	}
	a.audit(r, "admin.users.set_platform_admin", target, audit.ResultSuccess,
		map[string]string{"platform_admin": strconv.FormatBool(*req.PlatformAdmin)})
	u, err := a.cfg.People.GetUser(r.Context(), id)
	if err != nil {
		a.storeError(w, "read user", err)
		return
	}
	a.cfg.Logger.Info("platform admin flag changed", "user", id, "platform_admin", *req.PlatformAdmin)
	writeJSON(w, http.StatusOK, userView(u))
}

func (a *api) listOrgs(w http.ResponseWriter, r *http.Request) {
	if !a.people(w) {
		return
	}
	list, err := a.cfg.People.ListOrgs(r.Context())
	if err != nil {
		a.storeError(w, "list organizations", err)
		return
	}
	out := make([]OrgView, 0, len(list))
	for i := range list {
		out = append(out, ViewOrg(&list[i]))
	}
	a.audit(r, "admin.orgs.list", "", audit.ResultSuccess, nil)
	writeJSON(w, http.StatusOK, out)
}

func (a *api) getOrg(w http.ResponseWriter, r *http.Request) {
	if !a.people(w) {
		return
	}
	o, err := a.cfg.People.GetOrg(r.Context(), r.PathValue("org"))
	if err != nil {
		a.storeError(w, "get organization", err)
		return
	}
	a.audit(r, "admin.orgs.get", "org:"+o.ID, audit.ResultSuccess, nil)
	writeJSON(w, http.StatusOK, ViewOrg(o))
}

func (a *api) createOrg(w http.ResponseWriter, r *http.Request) {
	if !a.people(w) {
		return
	}
	var req OrgRequest
	if !decode(w, r, &req) {
		return
	}
	o, err := NewOrg(req.Name, a.cfg.Plans)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Owner == "" {
		writeError(w, http.StatusBadRequest, "owner: required (the id or email of an existing, verified user)")
		return
	}
	var owner *store.User
	if strings.Contains(req.Owner, "@") {
		owner, err = a.cfg.People.GetUserByEmail(r.Context(), req.Owner)
	} else {
		owner, err = a.cfg.People.GetUser(r.Context(), req.Owner)
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) || (err == nil && (!owner.EmailVerified || owner.ErasedAt != nil)) {
		writeError(w, http.StatusBadRequest, "owner: no verified user with that id or email")
		return
	}
	if err != nil {
		a.storeError(w, "find owner", err)
		return
	}
	if err := a.cfg.People.CreateOrg(r.Context(), o, owner.ID); err != nil {
		a.audit(r, "admin.orgs.create", "", audit.ResultFailure, nil)
		a.storeError(w, "create organization", err)
		return
	}
	a.audit(r, "admin.orgs.create", "org:"+o.ID, audit.ResultSuccess, map[string]string{"owner": "user:" + owner.ID})
	a.cfg.Logger.Info("organization created", "org", o.ID)
	writeJSON(w, http.StatusCreated, ViewOrg(o))
}

func (a *api) setOrgPolicy(w http.ResponseWriter, r *http.Request) {
	if !a.people(w) {
		return
	}
	var req PolicyRequest
	if !decode(w, r, &req) {
		return
	}
	o := &store.Org{ID: r.PathValue("org")}
	target := "org:" + o.ID
	if err := req.apply(o, a.cfg.Plans.get()); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := a.cfg.People.SetOrgPolicy(r.Context(), o); err != nil {
		a.audit(r, "admin.orgs.set_policy", target, audit.ResultFailure, nil)
		a.storeError(w, "set organization policy", err)
		return
	}
	a.audit(r, "admin.orgs.set_policy", target, audit.ResultSuccess, map[string]string{
		"plans": strings.Join(o.AllowedPlans, " "), "scopes": strings.Join(o.AllowedScopes, " "),
		"max_api_keys": strconv.Itoa(o.MaxAPIKeys), "max_clients": strconv.Itoa(o.MaxClients),
	})
	a.cfg.Logger.Info("organization policy set", "org", o.ID)
	writeJSON(w, http.StatusOK, ViewOrg(o))
}
