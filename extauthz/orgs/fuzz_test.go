package orgs_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/peopletest"
)

// FuzzRequests sends arbitrary bodies to every endpoint that decodes one,
// as an owner of a real organization on a real Postgres: whatever arrives,
// the answer is a success or a 4xx in the one error shape, never a 5xx,
// and the next caller is still served.
func FuzzRequests(f *testing.F) {
	for _, seed := range []struct {
		endpoint uint8
		body     string
	}{
		{0, `{"name":"acme"}`},
		{1, `{"name":"x","scopes":["models:infer"],"models":["*"],"plan":"free"}`},
		{1, `{"scopes":["models:../../infer"],"plan":"free\u0000"}`},
		{2, `{"client_id":"CLIENT","name":"k","expires_in":"720h"}`},
		{2, `{"client_id":"CLIENT","scopes":["models:infer"],"expires_in":"-1s"}`},
		{3, `{"email":"a@example.com","role":"owner"}`},
		{3, `{"email":"' OR 1=1 --","role":"viewer"}`},
		{4, `{"overlap":"24h"}`},
		{4, `{"overlap":"9999999999h","expires_in":"1ns"}`},
		{5, `{"name":"renamed","enabled":false}`},
		{6, `{"role":"viewer"}`},
		{0, `{"name":"a"} {"name":"b"}`},
		{1, `[`},
		{1, `{"scopes":null,"models":[null]}`},
		{2, strings.Repeat(`{"a":`, 100)},
	} {
		f.Add(seed.endpoint, seed.body)
	}
	e := newEnv(f)
	owner := e.user(f, "fuzz-owner@example.com")
	e.user(f, "a@example.com")
	org := peopletest.AddOrg(f, e.st, owner, openPolicy())
	cl := e.client(f, owner, org)
	base := "/api/v1/orgs/" + org
	f.Fuzz(func(t *testing.T, endpoint uint8, body string) {
		body = strings.ReplaceAll(body, "CLIENT", cl.ClientID)
		// A key to rotate each time (a rotated key cannot be again).
		k := e.key(t, owner, org, cl.ClientID)
		endpoints := []struct{ method, path string }{
			{"POST", "/api/v1/orgs"},
			{"POST", base + "/clients"},
			{"POST", base + "/apikeys"},
			{"POST", base + "/members"},
			{"POST", base + "/apikeys/" + k.ID + "/rotate"},
			{"PATCH", base + "/clients/" + cl.ClientID},
			{"PATCH", base + "/members/" + owner},
		}
		ep := endpoints[int(endpoint)%len(endpoints)]
		code, resp := e.call(t, owner, ep.method, ep.path, body, nil)
		if code >= 500 {
			t.Fatalf("%s %s %q: %d %s", ep.method, ep.path, body, code, resp)
		}
		if code >= 400 {
			var eb struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal([]byte(resp), &eb); err != nil || eb.Error == "" || eb.Description == "" {
				t.Fatalf("%s %s %q: %d with a body not in the error shape: %s", ep.method, ep.path, body, code, resp)
			}
		}
		// Tidy up what a success made, so counts stay under the policy.
		if ep.path == base+"/clients" && code == http.StatusCreated {
			var c clientOut
			_ = json.Unmarshal([]byte(resp), &c)
			e.call(t, owner, "DELETE", base+"/clients/"+c.ClientID, nil, nil)
		}
		e.call(t, owner, "DELETE", base+"/apikeys/"+k.ID, nil, nil)
		// The owner stays the only member, whatever a body changed.
		if err := e.st.SetMemberRole(ctx(t), org, owner, store.RoleOwner); err != nil {
			t.Fatal(err)
		}
		ms, err := e.st.ListMembers(ctx(t), org)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.UserID != owner {
				if err := e.st.SetMemberRole(ctx(t), org, m.UserID, ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		if code, resp := e.call(t, owner, "GET", base, nil, nil); code != http.StatusOK {
			t.Fatalf("the organization after %s %s %q: %d %s", ep.method, ep.path, body, code, resp)
		}
	})
}
