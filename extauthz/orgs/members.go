package orgs

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/webapi"
)

// OrgView is an organization with the caller's role in it.
type OrgView struct {
	admin.OrgView
	Role string `json:"role"`
}

// OrgRequest creates an organization (name) or renames it.
type OrgRequest struct {
	Name *string `json:"name"`
}

// MemberView is one membership.
type MemberView struct {
	UserID      string    `json:"user_id"`
	Email       string    `json:"email"`
	DisplayName string    `json:"display_name"`
	Role        string    `json:"role"`
	CreatedAt   time.Time `json:"created_at"`
}

// MemberRequest adds a member (email and role) or changes a role (role).
type MemberRequest struct {
	Email string `json:"email"`
	Role  string `json:"role"`
}

func checkRole(role string) error {
	if !validRole(role) {
		return errors.New("role: one of owner, admin, member, viewer")
	}
	return nil
}

func (a *API) listOrgs(w http.ResponseWriter, r *http.Request) {
	c, ok := a.person(w, r)
	if !ok {
		return
	}
	list, err := a.cfg.Store.UserOrgs(r.Context(), c.userID)
	if err != nil {
		a.storeError(w, "list organizations", err)
		return
	}
	out := make([]OrgView, 0, len(list))
	for i := range list {
		out = append(out, OrgView{OrgView: admin.ViewOrg(&list[i].Org), Role: list[i].Role})
	}
	webapi.WriteJSON(w, http.StatusOK, map[string]any{"orgs": out})
}

func (a *API) createOrg(w http.ResponseWriter, r *http.Request) {
	c, ok := a.person(w, r)
	if !ok {
		return
	}
	var req OrgRequest
	if !webapi.Decode(w, r, &req) {
		return
	}
	if req.Name == nil {
		badRequest(w, errors.New("name: required"))
		return
	}
	o, err := admin.NewOrg(*req.Name, a.cfg.Plans)
	if err != nil {
		badRequest(w, err)
		return
	}
	mine, err := a.cfg.Store.UserOrgs(r.Context(), c.userID)
	if err != nil {
		a.storeError(w, "list organizations", err)
		return
	}
	owned := 0
	for _, m := range mine {
		if m.Role == store.RoleOwner {
			owned++
		}
	}
	if owned >= MaxOwnedOrgs {
		c.record("org.create", "", audit.ResultDenied, map[string]string{"reason": "owns the maximum"})
		webapi.WriteError(w, http.StatusConflict, webapi.CodeConflict, fmt.Sprintf("you own %d organizations, the most one person may", MaxOwnedOrgs))
		return
	}
	if err := a.cfg.Store.CreateOrg(r.Context(), o, c.userID); err != nil {
		c.record("org.create", "", audit.ResultFailure, nil)
		a.storeError(w, "create organization", err)
		return
	}
	c.orgID = o.ID
	c.record("org.create", "org:"+o.ID, audit.ResultSuccess, nil)
	webapi.WriteJSON(w, http.StatusCreated, OrgView{OrgView: admin.ViewOrg(o), Role: store.RoleOwner})
}

func (a *API) getOrg(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.read", store.RoleViewer)
	if !ok {
		return
	}
	o, err := a.cfg.Store.GetOrg(r.Context(), c.orgID)
	if err != nil {
		a.storeError(w, "get organization", err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, OrgView{OrgView: admin.ViewOrg(o), Role: c.role})
}

func (a *API) getPolicy(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.read", store.RoleViewer)
	if !ok {
		return
	}
	o, err := a.cfg.Store.GetOrg(r.Context(), c.orgID)
	if err != nil {
		a.storeError(w, "get organization", err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, admin.ViewPolicy(o))
}

func (a *API) updateOrg(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.update", store.RoleAdmin)
	if !ok {
		return
	}
	var req OrgRequest
	if !webapi.Decode(w, r, &req) {
		return
	}
	if req.Name != nil {
		name, err := admin.OrgName(*req.Name)
		if err != nil {
			badRequest(w, err)
			return
		}
		if err := a.cfg.Store.RenameOrg(r.Context(), c.orgID, name); err != nil {
			c.record("org.update", "org:"+c.orgID, audit.ResultFailure, nil)
			a.storeError(w, "rename organization", err)
			return
		}
		c.record("org.update", "org:"+c.orgID, audit.ResultSuccess, nil)
	}
	a.getOrg(w, r)
}

func (a *API) deleteOrg(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.delete", store.RoleOwner)
	if !ok {
		return
	}
	if err := a.cfg.Store.DeleteOrg(r.Context(), c.orgID); err != nil {
		c.record("org.delete", "org:"+c.orgID, audit.ResultFailure, nil)
		a.storeError(w, "delete organization", err)
		return
	}
	c.record("org.delete", "org:"+c.orgID, audit.ResultSuccess, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listMembers(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.read", store.RoleViewer)
	if !ok {
		return
	}
	ms, err := a.cfg.Store.ListMembers(r.Context(), c.orgID)
	if err != nil {
		a.storeError(w, "list members", err)
		return
	}
	out := make([]MemberView, 0, len(ms))
	for _, m := range ms {
		out = append(out, MemberView{UserID: m.UserID, Email: m.Email, DisplayName: m.DisplayName, Role: m.Role, CreatedAt: m.CreatedAt})
	}
	webapi.WriteJSON(w, http.StatusOK, map[string]any{"members": out})
}

// mayManage reports whether a caller with role may give a member role to
// (or take it from) someone: admins manage everyone but owners; only an
// owner makes or unmakes an owner.
func mayManage(role, from, to string) bool {
	if role == store.RoleOwner {
		return true
	}
	return role == store.RoleAdmin && from != store.RoleOwner && to != store.RoleOwner
}

func (a *API) addMember(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.member.add", store.RoleAdmin)
	if !ok {
		return
	}
	var req MemberRequest
	if !webapi.Decode(w, r, &req) {
		return
	}
	if err := checkRole(req.Role); err != nil {
		badRequest(w, err)
		return
	}
	email := strings.TrimSpace(req.Email)
	if email == "" || len(email) > 254 {
		badRequest(w, errors.New("email: the address of an existing, verified user"))
		return
	}
	if !mayManage(c.role, "", req.Role) {
		c.record("org.member.add", "org:"+c.orgID, audit.ResultDenied, map[string]string{"role": req.Role})
		webapi.WriteError(w, http.StatusForbidden, webapi.CodeForbidden, "only an owner may make an owner")
		return
	}
	u, err := a.cfg.Store.GetUserByEmail(r.Context(), email)
	if err == nil && (!u.EmailVerified || u.ErasedAt != nil) {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		// Members of an organization may learn that an address has an
		// account; a stranger to every organization may not (this needs
		// admin in one).
		badRequest(w, errors.New("email: no verified user with that address"))
		return
	}
	if err != nil {
		a.storeError(w, "find user", err)
		return
	}
	target := "user:" + u.ID
	if err := a.cfg.Store.AddMember(r.Context(), c.orgID, u.ID, req.Role); err != nil {
		c.record("org.member.add", target, audit.ResultFailure, map[string]string{"role": req.Role})
		a.storeError(w, "add member", err)
		return
	}
	c.record("org.member.add", target, audit.ResultSuccess, map[string]string{"role": req.Role})
	webapi.WriteJSON(w, http.StatusCreated, MemberView{UserID: u.ID, Email: u.Email, DisplayName: u.DisplayName, Role: req.Role, CreatedAt: a.cfg.Now().UTC()})
}

func (a *API) updateMember(w http.ResponseWriter, r *http.Request) {
	c, ok := a.member(w, r, "org.member.update", store.RoleAdmin)
	if !ok {
		return
	}
	var req MemberRequest
	if !webapi.Decode(w, r, &req) {
		return
	}
	if req.Email != "" {
		badRequest(w, errors.New("email: not changeable; only role is"))
		return
	}
	if err := checkRole(req.Role); err != nil {
		badRequest(w, err)
		return
	}
	a.changeMember(w, c, "org.member.update", req.Role)
}

func (a *API) removeMember(w http.ResponseWriter, r *http.Request) {
	// Anyone may leave; removing someone else needs admin.
	want := store.RoleAdmin
	if p, ok := a.person(w, r); !ok {
		return
	} else if p.userID == r.PathValue("user") {
		want = store.RoleViewer
	}
	c, ok := a.member(w, r, "org.member.remove", want)
	if !ok {
		return
	}
	a.changeMember(w, c, "org.member.remove", "")
}

// changeMember sets the path's user's role to role ("" removes them).
func (a *API) changeMember(w http.ResponseWriter, c *call, action, role string) {
	userID := c.r.PathValue("user")
	target := "user:" + userID
	current, err := a.cfg.Store.MemberRole(c.r.Context(), c.orgID, userID)
	if err != nil {
		a.storeError(w, "member", err)
		return
	}
	if userID != c.userID || role != "" { // leaving needs no right over oneself
		if !mayManage(c.role, current, role) {
			c.record(action, target, audit.ResultDenied, map[string]string{"role": role, "from": current})
			webapi.WriteError(w, http.StatusForbidden, webapi.CodeForbidden, "only an owner may change or remove an owner, or make one")
			return
		}
	}
	if err := a.cfg.Store.SetMemberRole(c.r.Context(), c.orgID, userID, role); err != nil {
		c.record(action, target, audit.ResultFailure, map[string]string{"role": role, "from": current})
		a.storeError(w, "change member", err)
		return
	}
	c.record(action, target, audit.ResultSuccess, map[string]string{"role": role, "from": current})
	if role == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	u, err := a.cfg.Store.GetUser(c.r.Context(), userID)
	if err != nil {
		a.storeError(w, "read user", err)
		return
	}
	webapi.WriteJSON(w, http.StatusOK, MemberView{UserID: u.ID, Email: u.Email, DisplayName: u.DisplayName, Role: role})
}
