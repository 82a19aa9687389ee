package orgs_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/credentials"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/peopletest"
)

// TestRoleMatrix: each role against each action, allowed (2xx) or 403;
// someone who is no member gets 404 for all of it.
func TestRoleMatrix(t *testing.T) {
	e := newEnv(t)
	type fixture struct {
		org, client, key, target string
	}
	actions := []struct {
		name    string
		min     string // lowest role allowed
		request func(f fixture) (method, path string, body any)
	}{
		{"get org", store.RoleViewer, func(f fixture) (string, string, any) { return "GET", "/api/v1/orgs/" + f.org, nil }},
		{"get policy", store.RoleViewer, func(f fixture) (string, string, any) { return "GET", "/api/v1/orgs/" + f.org + "/policy", nil }},
		{"list members", store.RoleViewer, func(f fixture) (string, string, any) { return "GET", "/api/v1/orgs/" + f.org + "/members", nil }},
		{"list clients", store.RoleViewer, func(f fixture) (string, string, any) { return "GET", "/api/v1/orgs/" + f.org + "/clients", nil }},
		{"get client", store.RoleViewer, func(f fixture) (string, string, any) {
			return "GET", "/api/v1/orgs/" + f.org + "/clients/" + f.client, nil
		}},
		{"list keys", store.RoleViewer, func(f fixture) (string, string, any) { return "GET", "/api/v1/orgs/" + f.org + "/apikeys", nil }},
		{"create client", store.RoleMember, func(f fixture) (string, string, any) {
			return "POST", "/api/v1/orgs/" + f.org + "/clients", map[string]any{"name": "x", "scopes": []string{"models:read"}}
		}},
		{"update client", store.RoleMember, func(f fixture) (string, string, any) {
			return "PATCH", "/api/v1/orgs/" + f.org + "/clients/" + f.client, map[string]any{"name": "renamed"}
		}},
		{"rotate client secret", store.RoleMember, func(f fixture) (string, string, any) {
			return "POST", "/api/v1/orgs/" + f.org + "/clients/" + f.client + "/rotate-secret", nil
		}},
		{"delete client", store.RoleMember, func(f fixture) (string, string, any) {
			return "DELETE", "/api/v1/orgs/" + f.org + "/clients/" + f.client, nil
		}},
		{"create key", store.RoleMember, func(f fixture) (string, string, any) {
			return "POST", "/api/v1/orgs/" + f.org + "/apikeys", map[string]any{"client_id": f.client}
		}},
		{"rotate key", store.RoleMember, func(f fixture) (string, string, any) {
			return "POST", "/api/v1/orgs/" + f.org + "/apikeys/" + f.key + "/rotate", map[string]any{"overlap": "1h"}
		}},
		{"revoke key", store.RoleMember, func(f fixture) (string, string, any) {
			return "DELETE", "/api/v1/orgs/" + f.org + "/apikeys/" + f.key, nil
		}},
		{"rename org", store.RoleAdmin, func(f fixture) (string, string, any) {
			return "PATCH", "/api/v1/orgs/" + f.org, map[string]any{"name": "new name"}
		}},
		{"add member", store.RoleAdmin, func(f fixture) (string, string, any) {
			return "POST", "/api/v1/orgs/" + f.org + "/members", map[string]any{"email": "newcomer-" + f.org + "@example.com", "role": "member"}
		}},
		{"change member", store.RoleAdmin, func(f fixture) (string, string, any) {
			return "PATCH", "/api/v1/orgs/" + f.org + "/members/" + f.target, map[string]any{"role": "viewer"}
		}},
		{"remove member", store.RoleAdmin, func(f fixture) (string, string, any) {
			return "DELETE", "/api/v1/orgs/" + f.org + "/members/" + f.target, nil
		}},
		{"delete org", store.RoleOwner, func(f fixture) (string, string, any) { return "DELETE", "/api/v1/orgs/" + f.org, nil }},
	}
	rank := map[string]int{store.RoleViewer: 1, store.RoleMember: 2, store.RoleAdmin: 3, store.RoleOwner: 4, "": 0}
	for i, role := range []string{store.RoleOwner, store.RoleAdmin, store.RoleMember, store.RoleViewer, ""} {
		for j, act := range actions {
			name := role
			if name == "" {
				name = "outsider"
			}
			t.Run(name+"/"+act.name, func(t *testing.T) {
				// A fresh organization per case: the owner, the caller in
				// its role, a member to change or remove, a client and key.
				n := fmt.Sprintf("%d-%d", i, j)
				owner := e.user(t, "owner-"+n+"@example.com")
				f := fixture{org: peopletest.AddOrg(t, e.st, owner, openPolicy())}
				e.user(t, "newcomer-"+f.org+"@example.com")
				caller := owner
				if role != store.RoleOwner {
					caller = e.user(t, "caller-"+n+"@example.com")
					if role != "" {
						if err := e.st.AddMember(ctx(t), f.org, caller, role); err != nil {
							t.Fatal(err)
						}
					}
				}
				f.target = e.user(t, "target-"+n+"@example.com")
				if err := e.st.AddMember(ctx(t), f.org, f.target, store.RoleMember); err != nil {
					t.Fatal(err)
				}
				f.client = e.client(t, owner, f.org).ClientID
				f.key = e.key(t, owner, f.org, f.client).ID

				method, path, body := act.request(f)
				code, resp := e.call(t, caller, method, path, body, nil)
				switch {
				case role == "":
					if code != http.StatusNotFound {
						t.Fatalf("%s %s as a stranger: %d %s, want 404", method, path, code, resp)
					}
				case rank[role] >= rank[act.min]:
					if code < 200 || code > 299 {
						t.Fatalf("%s %s as %s: %d %s, want 2xx", method, path, role, code, resp)
					}
				default:
					if code != http.StatusForbidden || !strings.Contains(resp, act.min) {
						t.Fatalf("%s %s as %s: %d %s, want 403 naming %s", method, path, role, code, resp, act.min)
					}
				}
			})
		}
	}
	if len(e.audit.Find("org.client.create", audit.ResultDenied)) == 0 {
		t.Error("a viewer's refused client creation was not audited as denied")
	}
	if rotated := e.audit.Find("org.apikey.rotate", audit.ResultSuccess); len(rotated) == 0 {
		t.Error("key rotation was not audited")
	} else if ev := rotated[len(rotated)-1]; !strings.HasPrefix(ev.Actor, "user:") ||
		!strings.HasPrefix(ev.Target, "apikey:") || !strings.HasPrefix(ev.Detail["org"], "org:") {
		t.Errorf("key rotation's audit event = %+v", ev)
	}
}

// TestOwnersAndMembers: an organization keeps an owner; admins do not
// touch owners; anyone may leave.
func TestOwnersAndMembers(t *testing.T) {
	e := newEnv(t)
	owner, adm, viewer := e.user(t, "o@example.com"), e.user(t, "a@example.com"), e.user(t, "v@example.com")
	peopletest.AddUser(t, e.pool, peopletest.User{Email: "unverified@example.com"}) // never verified
	org := peopletest.AddOrg(t, e.st, owner, openPolicy())
	base := "/api/v1/orgs/" + org + "/members"
	for _, tc := range []struct {
		as, method, path string
		body             any
		want             int
	}{
		{owner, "POST", base, map[string]any{"email": "A@Example.com", "role": "admin"}, http.StatusCreated},
		{owner, "POST", base, map[string]any{"email": "v@example.com", "role": "viewer"}, http.StatusCreated},
		{owner, "POST", base, map[string]any{"email": "v@example.com", "role": "viewer"}, http.StatusConflict},
		{owner, "POST", base, map[string]any{"email": "nobody@example.com", "role": "viewer"}, http.StatusBadRequest},
		{owner, "POST", base, map[string]any{"email": "unverified@example.com", "role": "viewer"}, http.StatusBadRequest},
		{owner, "POST", base, map[string]any{"email": "v@example.com", "role": "superuser"}, http.StatusBadRequest},
		// The last owner can neither leave nor step down.
		{owner, "DELETE", base + "/" + owner, nil, http.StatusConflict},
		{owner, "PATCH", base + "/" + owner, map[string]any{"role": "admin"}, http.StatusConflict},
		// An admin cannot touch an owner, nor make one.
		{adm, "DELETE", base + "/" + owner, nil, http.StatusForbidden},
		{adm, "PATCH", base + "/" + owner, map[string]any{"role": "viewer"}, http.StatusForbidden},
		{adm, "PATCH", base + "/" + viewer, map[string]any{"role": "owner"}, http.StatusForbidden},
		{adm, "PATCH", base + "/" + adm, map[string]any{"role": "owner"}, http.StatusForbidden},
		{adm, "PATCH", base + "/" + viewer, map[string]any{"role": "member"}, http.StatusOK},
		// A member may leave; then the organization is not found for them.
		{viewer, "DELETE", base + "/" + viewer, nil, http.StatusNoContent},
		{viewer, "GET", "/api/v1/orgs/" + org, nil, http.StatusNotFound},
		// With a second owner, the first may step down.
		{owner, "PATCH", base + "/" + adm, map[string]any{"role": "owner"}, http.StatusOK},
		{owner, "PATCH", base + "/" + owner, map[string]any{"role": "viewer"}, http.StatusOK},
		{owner, "DELETE", "/api/v1/orgs/" + org, nil, http.StatusForbidden},
		{adm, "DELETE", "/api/v1/orgs/" + org, nil, http.StatusNoContent},
		{adm, "GET", "/api/v1/orgs/" + org, nil, http.StatusNotFound},
	} {
		if code, body := e.call(t, tc.as, tc.method, tc.path, tc.body, nil); code != tc.want {
			t.Fatalf("%s %s %v: %d %s, want %d", tc.method, tc.path, tc.body, code, body, tc.want)
		}
	}
}

// TestPolicy: a plan or scope outside the policy is 403 naming it; over
// the counts is 409; within, members create.
func TestPolicy(t *testing.T) {
	e := newEnv(t)
	owner := e.user(t, "o@example.com")
	org := peopletest.AddOrg(t, e.st, owner, store.Org{AllowedPlans: []string{"standard"}, AllowedScopes: []string{"models:infer"}, MaxClients: 1, MaxAPIKeys: 2})
	path := "/api/v1/orgs/" + org + "/clients"
	for _, tc := range []struct {
		body       map[string]any
		want       int
		mustNaming string
	}{
		{map[string]any{"scopes": []string{"models:infer"}, "plan": "gold"}, http.StatusForbidden, `\"gold\"`},
		// No plan means the gateway's default plan, which this policy does not allow.
		{map[string]any{"scopes": []string{"models:infer"}}, http.StatusForbidden, `\"free\"`},
		{map[string]any{"scopes": []string{"models:read"}, "plan": "standard"}, http.StatusForbidden, `\"models:read\"`},
		{map[string]any{"scopes": []string{"helix:introspect"}, "plan": "standard"}, http.StatusForbidden, `\"helix:introspect\"`},
		// Not a plan of the gateway at all: the admin API's rule, 400.
		{map[string]any{"scopes": []string{"models:infer"}, "plan": "platinum"}, http.StatusBadRequest, "platinum"},
		// models:infer grants models:<m>:infer, as in Check.
		{map[string]any{"scopes": []string{"models:simple:infer"}, "plan": "standard", "models": []string{"simple"}}, http.StatusCreated, ""},
		{map[string]any{"scopes": []string{"models:infer"}, "plan": "standard"}, http.StatusConflict, "1 clients of 1"},
	} {
		code, body := e.call(t, owner, "POST", path, tc.body, nil)
		if code != tc.want || !strings.Contains(body, tc.mustNaming) {
			t.Fatalf("create client %v: %d %s, want %d naming %s", tc.body, code, body, tc.want, tc.mustNaming)
		}
	}
	var cs struct {
		Clients []clientOut `json:"clients"`
	}
	e.call(t, owner, "GET", path, nil, &cs)
	cl := cs.Clients[0].ClientID
	// Changing the plan or scopes is held to the policy too.
	if code, body := e.call(t, owner, "PATCH", path+"/"+cl, map[string]any{"scopes": []string{"models:read"}}, nil); code != http.StatusForbidden || !strings.Contains(body, "models:read") {
		t.Fatalf("widen scopes: %d %s", code, body)
	}
	keys := "/api/v1/orgs/" + org + "/apikeys"
	e.key(t, owner, org, cl)
	k2 := e.key(t, owner, org, cl)
	if code, body := e.call(t, owner, "POST", keys, map[string]any{"client_id": cl}, nil); code != http.StatusConflict || !strings.Contains(body, "2 live API keys of 2") {
		t.Fatalf("third key over a limit of 2: %d %s", code, body)
	}
	// A revoked key frees its place; a rotation needs none.
	if code, body := e.call(t, owner, "POST", keys+"/"+k2.ID+"/rotate", map[string]any{"overlap": "1h"}, nil); code != http.StatusCreated {
		t.Fatalf("rotate at the limit: %d %s", code, body)
	}
	if code, body := e.call(t, owner, "DELETE", keys+"/"+k2.ID, nil, nil); code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", code, body)
	}
	// Policy narrowed after the fact: new keys are held to it.
	if err := e.st.SetOrgPolicy(ctx(t), &store.Org{ID: org, AllowedPlans: []string{"gold"}, AllowedScopes: []string{"models:infer"}, MaxClients: 1, MaxAPIKeys: 5}); err != nil {
		t.Fatal(err)
	}
	if code, body := e.call(t, owner, "POST", keys, map[string]any{"client_id": cl}, nil); code != http.StatusForbidden || !strings.Contains(body, `\"standard\"`) {
		t.Fatalf("key of a client whose plan left the policy: %d %s", code, body)
	}
	if len(e.audit.Find("org.apikey.create", audit.ResultDenied)) == 0 {
		t.Error("policy refusal not audited as denied")
	}
	var pol struct {
		Plans      []string `json:"allowed_plans"`
		MaxAPIKeys int      `json:"max_api_keys"`
	}
	if code, body := e.call(t, owner, "GET", "/api/v1/orgs/"+org+"/policy", nil, &pol); code != http.StatusOK || !slices.Equal(pol.Plans, []string{"gold"}) || pol.MaxAPIKeys != 5 {
		t.Fatalf("policy: %d %s", code, body)
	}
}

// TestNewOrgDefaults: a person creates an organization and owns it, with
// the default policy.
func TestNewOrgDefaults(t *testing.T) {
	e := newEnv(t)
	u := e.user(t, "founder@example.com")
	var o struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		Role   string `json:"role"`
		Policy struct {
			Plans      []string `json:"allowed_plans"`
			Scopes     []string `json:"allowed_scopes"`
			MaxAPIKeys int      `json:"max_api_keys"`
			MaxClients int      `json:"max_clients"`
		} `json:"policy"`
	}
	if code, body := e.call(t, u, "POST", "/api/v1/orgs", map[string]any{"name": "Acme"}, &o); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	if o.Role != "owner" || !slices.Equal(o.Policy.Plans, []string{"free"}) || !slices.Equal(o.Policy.Scopes, []string{"models:infer", "models:read"}) ||
		o.Policy.MaxAPIKeys != 10 || o.Policy.MaxClients != 5 {
		t.Fatalf("new organization %+v", o)
	}
	var list struct {
		Orgs []struct {
			ID, Role string
		} `json:"orgs"`
	}
	if code, body := e.call(t, u, "GET", "/api/v1/orgs", nil, &list); code != http.StatusOK || len(list.Orgs) != 1 || list.Orgs[0].ID != o.ID {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, bad := range []string{`{}`, `{"name":""}`, `{"name":"a\u0000b"}`, `{"name":"\u202e evil"}`, `{"name":"x","extra":1}`, `{"name":` + `"` + strings.Repeat("n", 201) + `"}`} {
		if code, body := e.call(t, u, "POST", "/api/v1/orgs", bad, nil); code != http.StatusBadRequest {
			t.Errorf("create %s: %d %s, want 400", bad, code, body)
		}
	}
	if code, _ := e.call(t, "", "GET", "/api/v1/orgs", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("without a principal: %d, want 401", code)
	}
	for range orgsMax - 1 {
		if code, body := e.call(t, u, "POST", "/api/v1/orgs", map[string]any{"name": "more"}, nil); code != http.StatusCreated {
			t.Fatalf("create: %d %s", code, body)
		}
	}
	if code, body := e.call(t, u, "POST", "/api/v1/orgs", map[string]any{"name": "one too many"}, nil); code != http.StatusConflict {
		t.Fatalf("beyond the organizations one may own: %d %s, want 409", code, body)
	}
}

const orgsMax = 10 // orgs.MaxOwnedOrgs

// TestOtherOrganizationIsNotFound: a member of one organization reaches
// nothing of another's, even through their own organization's paths.
func TestOtherOrganizationIsNotFound(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user(t, "alice@example.com"), e.user(t, "bob@example.com")
	a, b := peopletest.AddOrg(t, e.st, alice, openPolicy()), peopletest.AddOrg(t, e.st, bob, openPolicy())
	bc := e.client(t, bob, b)
	bk := e.key(t, bob, b, bc.ClientID)
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/v1/orgs/" + b},
		{"GET", "/api/v1/orgs/" + b + "/clients"},
		{"DELETE", "/api/v1/orgs/" + b},
		{"GET", "/api/v1/orgs/" + a + "/clients/" + bc.ClientID},
		{"PATCH", "/api/v1/orgs/" + a + "/clients/" + bc.ClientID},
		{"DELETE", "/api/v1/orgs/" + a + "/clients/" + bc.ClientID},
		{"POST", "/api/v1/orgs/" + a + "/clients/" + bc.ClientID + "/rotate-secret"},
		{"POST", "/api/v1/orgs/" + a + "/apikeys/" + bk.ID + "/rotate"},
		{"DELETE", "/api/v1/orgs/" + a + "/apikeys/" + bk.ID},
		{"GET", "/api/v1/orgs/not-a-uuid"},
		{"GET", "/api/v1/orgs/00000000-0000-0000-0000-000000000000"},
	} {
		var body any
		if req.method == "PATCH" || strings.HasSuffix(req.path, "/rotate") {
			body = map[string]any{}
		}
		if code, resp := e.call(t, alice, req.method, req.path, body, nil); code != http.StatusNotFound {
			t.Errorf("%s %s as another organization's owner: %d %s, want 404", req.method, req.path, code, resp)
		}
	}
	// Nor can a key be made for another organization's client.
	if code, resp := e.call(t, alice, "POST", "/api/v1/orgs/"+a+"/apikeys", map[string]any{"client_id": bc.ClientID}, nil); code != http.StatusBadRequest {
		t.Errorf("key for another organization's client: %d %s, want 400", code, resp)
	}
	if _, err := e.st.GetAPIKey(ctx(t), bk.ID); err != nil {
		t.Fatal(err)
	}
	if k, _ := e.st.GetAPIKey(ctx(t), bk.ID); k.RevokedAt != nil || k.ExpiresAt != nil {
		t.Errorf("another organization's key changed: %+v", k)
	}
}

// TestKeyRotationOverlap: after a rotation the new key works at once, the
// old one until the overlap ends, then Check's copy refuses it.
func TestKeyRotationOverlap(t *testing.T) {
	e := newEnv(t)
	owner := e.user(t, "o@example.com")
	org := peopletest.AddOrg(t, e.st, owner, openPolicy())
	cl := e.client(t, owner, org)
	old := e.key(t, owner, org, cl.ClientID)

	var next keyOut
	keys := "/api/v1/orgs/" + org + "/apikeys/"
	for _, bad := range []string{`{"overlap":"-1h"}`, `{"overlap":"721h"}`, `{"overlap":"soon"}`, `{"overlap":1}`} {
		if code, body := e.call(t, owner, "POST", keys+old.ID+"/rotate", bad, nil); code != http.StatusBadRequest {
			t.Errorf("rotate %s: %d %s, want 400", bad, code, body)
		}
	}
	if code, body := e.call(t, owner, "POST", keys+old.ID+"/rotate", map[string]any{"overlap": "2h"}, &next); code != http.StatusCreated {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if next.Key == "" || next.Replaces != old.ID || next.ID == old.ID {
		t.Fatalf("rotated key %+v", next)
	}
	if code, body := e.call(t, owner, "POST", keys+old.ID+"/rotate", map[string]any{}, nil); code != http.StatusConflict {
		t.Fatalf("rotating the old key again: %d %s, want 409", code, body)
	}

	checker := func(at time.Time) *credentials.APIKeys {
		clients := credentials.NewClients(e.st, quiet, nil)
		keys := credentials.NewAPIKeys(credentials.APIKeysConfig{Store: e.st, Clients: clients, Hasher: e.hasher, Logger: quiet, Now: func() time.Time { return at }})
		if err := clients.Load(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := keys.Load(ctx(t)); err != nil {
			t.Fatal(err)
		}
		return keys
	}
	now := time.Now()
	for _, tc := range []struct {
		at       time.Time
		key      string
		works    bool
		whatWhen string
	}{
		{now, old.Key, true, "old key during the overlap"},
		{now, next.Key, true, "new key at once"},
		{now.Add(2*time.Hour + time.Minute), old.Key, false, "old key after the overlap"},
		{now.Add(2*time.Hour + time.Minute), next.Key, true, "new key after the overlap"},
	} {
		p, err := checker(tc.at).CheckAPIKey(ctx(t), tc.key)
		if tc.works != (err == nil) {
			t.Fatalf("%s: (%v, %v), works=%v wanted", tc.whatWhen, p, err, tc.works)
		}
		if err != nil && err != check.ErrInvalidKey {
			t.Fatalf("%s: %v, want ErrInvalidKey", tc.whatWhen, err)
		}
	}

	// Overlap 0: the old key ends now.
	var third keyOut
	if code, body := e.call(t, owner, "POST", keys+next.ID+"/rotate", map[string]any{"overlap": "0s"}, &third); code != http.StatusCreated {
		t.Fatalf("rotate with no overlap: %d %s", code, body)
	}
	if _, err := checker(time.Now()).CheckAPIKey(ctx(t), next.Key); err == nil {
		t.Fatal("key rotated with overlap 0s still works")
	}
	// A revoked key cannot be rotated.
	if code, _ := e.call(t, owner, "DELETE", keys+third.ID, nil, nil); code != http.StatusNoContent {
		t.Fatal("revoke failed")
	}
	if code, body := e.call(t, owner, "POST", keys+third.ID+"/rotate", map[string]any{}, nil); code != http.StatusConflict {
		t.Fatalf("rotating a revoked key: %d %s, want 409", code, body)
	}
}

// TestUsage: Check's use counts reach the key views as last_used_at and
// the day's count, through the use flusher.
func TestUsage(t *testing.T) {
	e := newEnv(t)
	owner := e.user(t, "o@example.com")
	org := peopletest.AddOrg(t, e.st, owner, openPolicy())
	cl := e.client(t, owner, org)
	k := e.key(t, owner, org, cl.ClientID)
	clients := credentials.NewClients(e.st, quiet, nil)
	keys := credentials.NewAPIKeys(credentials.APIKeysConfig{Store: e.st, Clients: clients, Hasher: e.hasher, Logger: quiet})
	if err := clients.Load(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := keys.Load(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for range 7 {
		if _, err := keys.CheckAPIKey(ctx(t), k.Key); err != nil {
			t.Fatal(err)
		}
	}
	if err := keys.FlushUses(ctx(t)); err != nil {
		t.Fatal(err)
	}
	var list struct {
		APIKeys []keyOut `json:"apikeys"`
	}
	if code, body := e.call(t, owner, "GET", "/api/v1/orgs/"+org+"/apikeys", nil, &list); code != http.StatusOK || len(list.APIKeys) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	got := list.APIKeys[0]
	today := time.Now().UTC().Format(time.DateOnly)
	if got.LastUsedAt == nil || got.UseCount != 7 || len(got.Usage) != 1 || got.Usage[0].Day != today || got.Usage[0].Count != 7 || got.Key != "" {
		t.Fatalf("key view after 7 uses: %+v", got)
	}
}

// TestSQLMetacharacters: names and addresses full of SQL's special
// characters are data, stored and returned as sent.
func TestSQLMetacharacters(t *testing.T) {
	e := newEnv(t)
	owner := e.user(t, "o@example.com")
	for _, name := range []string{`'; DROP TABLE organizations; --`, `" OR "1"="1`, `%_\`, `$1 $$ $tag$`, `Ünïcødé 組織`} {
		var o struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		if code, body := e.call(t, owner, "POST", "/api/v1/orgs", map[string]any{"name": name}, &o); code != http.StatusCreated || o.Name != name {
			t.Fatalf("create %q: %d %s", name, code, body)
		}
		var c clientOut
		if code, body := e.call(t, owner, "POST", "/api/v1/orgs/"+o.ID+"/clients",
			map[string]any{"name": name, "scopes": []string{"models:infer"}}, &c); code != http.StatusCreated {
			t.Fatalf("client named %q: %d %s", name, code, body)
		}
		if code, body := e.call(t, owner, "POST", "/api/v1/orgs/"+o.ID+"/members",
			map[string]any{"email": name, "role": "viewer"}, nil); code != http.StatusBadRequest {
			t.Fatalf("member with address %q: %d %s, want 400", name, code, body)
		}
	}
	for _, id := range []string{`' OR '1'='1`, `1; DROP TABLE clients`, `%`} {
		if code, body := e.call(t, owner, "GET", "/api/v1/orgs/"+urlEscape(id), nil, nil); code != http.StatusNotFound {
			t.Fatalf("organization %q: %d %s, want 404", id, code, body)
		}
	}
	orgsList, err := e.st.UserOrgs(ctx(t), owner)
	if err != nil || len(orgsList) != 5 {
		t.Fatalf("organizations after the metacharacters: %d, %v", len(orgsList), err)
	}
}

func urlEscape(s string) string {
	r := strings.NewReplacer("%", "%25", " ", "%20", "'", "%27", ";", "%3B")
	return r.Replace(s)
}
