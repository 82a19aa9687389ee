package portal

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/peopletest"
)

var secretShownRE = regexp.MustCompile(`<code id="secret-value" class="secret">([^<]+)</code>`)

// shownSecret is the secret p shows once ("" when none).
func shownSecret(p page) string {
	if m := secretShownRE.FindStringSubmatch(p.body); m != nil {
		return html.UnescapeString(m[1])
	}
	return ""
}

// TestCredentialsWithoutOrg: a person in no organization is offered to
// create one; every credential change says so without calling the API;
// creating one goes to its page.
func TestCredentialsWithoutOrg(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	uid := e.person("alone@example.test")
	b := e.browser(uid)
	b.get("/portal/credentials").expect(t, http.StatusOK, `action="/portal/credentials/org"`).lacks(t, "New client")
	for _, path := range []string{"clients", "clients/rotate", "clients/delete", "keys", "keys/rotate", "keys/revoke"} {
		b.post("/portal/credentials/"+path, url.Values{"id": {"x"}, "name": {"n"}, "client_id": {"c"}, "scopes": {"models:infer"}}).
			expect(t, http.StatusBadRequest, "You are not a member of an organization: create one first.", `action="/portal/credentials/org"`)
	}
	b.post("/portal/credentials/org", url.Values{"name": {" "}}).expect(t, http.StatusBadRequest, "Enter a name for the organization.")
	e.tap.override(t, "POST /api/v1/orgs", answer(http.StatusConflict, "application/json",
		`{"error":"conflict","error_description":"you own too many organizations"}`))
	b.post("/portal/credentials/org", url.Values{"name": {"Acme"}}).expect(t, http.StatusConflict, `role="alert">You own too many organizations.</p>`)
	e.tap.override(t, "POST /api/v1/orgs", nil)
	for _, c := range e.tap.list() {
		if strings.HasPrefix(c.Path, "/api/v1/orgs/") {
			t.Fatalf("a refused change called %s %s", c.Method, c.Path)
		}
	}

	p := b.post("/portal/credentials/org", url.Values{"name": {"Acme"}})
	orgs, err := e.st.UserOrgs(context.Background(), uid)
	if err != nil || len(orgs) != 1 || orgs[0].Name != "Acme" || orgs[0].Role != store.RoleOwner {
		t.Fatalf("organizations %+v (%v)", orgs, err)
	}
	p.redirect(t, "/portal/credentials?done=org-created&org="+orgs[0].ID)
	if got := jsonOf(t, e.tap.last(t, "POST /api/v1/orgs").json(t)); got != `{"name":"Acme"}` {
		t.Fatalf("create organization sent %s", got)
	}
	b.get(p.header.Get("Location")).expect(t, http.StatusOK, "The organization is created.", "<strong>Acme</strong>", "(your role: owner)")
}

// TestCredentialsClientsAndKeys: the client and key forms: their own
// checks (refused values kept), what they send, the secret shown once,
// and the API's refusals and failures, for the organization ?org= names.
func TestCredentialsClientsAndKeys(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	uid := e.person("creds@example.test")
	policy := store.Org{AllowedPlans: []string{"free"}, AllowedScopes: []string{"models:infer", "models:read"}, MaxClients: 5, MaxAPIKeys: 5}
	policy.Name = "Acme"
	org := peopletest.AddOrg(t, e.st, uid, policy)
	other := peopletest.AddOrg(t, e.st, uid, store.Org{Name: "Other"})
	b := e.browser(uid)
	q := "?org=" + org
	path := func(rest string) string { return "/portal/credentials/" + rest + q }

	b.get("/portal/credentials?org="+other).expect(t, http.StatusOK, "<strong>Other</strong>",
		"The organization's policy allows no scopes yet")
	b.get("/portal/credentials"+q).expect(t, http.StatusOK, "<strong>Acme</strong>", "No clients yet.", "No API keys yet.",
		`value="models:infer"`, `value="models:read"`, "<option>free</option>", "Create a client first")

	// Client: the form's checks keep what was typed and ticked.
	b.post(path("clients"), url.Values{"scopes": {"models:read"}, "models": {"simple"}}).
		expect(t, http.StatusBadRequest, "Enter a name for the client.", `value="models:read" checked`, `value="simple"`).
		lacks(t, `value="models:infer" checked`)
	b.post(path("clients"), url.Values{"name": {"Svc"}, "plan": {"free"}}).
		expect(t, http.StatusBadRequest, "Choose at least one scope for the client.", `value="Svc"`, "<option selected>free</option>")
	if n := e.tap.count("POST /api/v1/orgs/" + org + "/clients"); n != 0 {
		t.Fatalf("the form's own refusals reached the API (%d)", n)
	}
	// The API's policy refusal, as a sentence, with the form kept.
	b.post(path("clients"), url.Values{"name": {"Svc"}, "scopes": {"models:infer"}, "plan": {"pro"}}).
		expect(t, http.StatusForbidden, `role="alert">Plan: `, "outside the organization&#39;s policy", `value="Svc"`)
	// A failure on our side is not the API's text.
	e.tap.override(t, "POST /api/v1/orgs/"+org+"/clients", answer(http.StatusBadGateway, "text/plain", "dial tcp: refused"))
	b.post(path("clients"), url.Values{"name": {"Svc"}, "scopes": {"models:infer"}}).
		expect(t, http.StatusServiceUnavailable, "That could not be done right now; try again shortly.", `value="Svc"`).lacks(t, "dial tcp")
	e.tap.override(t, "POST /api/v1/orgs/"+org+"/clients", nil)

	created := b.post(path("clients"), url.Values{"name": {"Svc"}, "scopes": {"models:infer"}, "models": {"simple, mlp\nbert"}, "plan": {"free"}})
	created.expect(t, http.StatusCreated, "The client Svc is created. Copy its secret now: it is shown only once.", "<th scope=\"row\">Svc</th>")
	secret := shownSecret(created)
	if got, want := jsonOf(t, e.tap.last(t, "POST /api/v1/orgs/"+org+"/clients").json(t)),
		`{"models":["simple","mlp","bert"],"name":"Svc","plan":"free","scopes":["models:infer"]}`; got != want || secret == "" {
		t.Fatalf("create client sent %s, want %s; secret %q", got, want, secret)
	}
	cs, err := e.st.ListOrgClients(context.Background(), org)
	if err != nil || len(cs) != 1 {
		t.Fatalf("clients %+v (%v)", cs, err)
	}
	clientID := cs[0].ID
	b.post(path("clients"), url.Values{"name": {"Bare"}, "scopes": {"models:read"}}).expect(t, http.StatusCreated)
	if got := e.tap.last(t, "POST /api/v1/orgs/"+org+"/clients").json(t); got["models"] != nil || got["plan"] != nil {
		t.Fatalf("a client without models or plan sent %v", got)
	}
	if p := b.get("/portal/credentials" + q); shownSecret(p) != "" || strings.Contains(p.body, secret) {
		t.Fatal("the secret is shown again")
	}

	// Rotate the client's secret.
	for _, tc := range []struct {
		id     string
		status int
		msg    string
	}{
		{"", http.StatusBadRequest, "Choose the client or key to change."},
		{"a/b", http.StatusBadRequest, "Choose the client or key to change."},
		{"no-such-client", http.StatusNotFound, `role="alert">`},
	} {
		b.post(path("clients/rotate"), url.Values{"id": {tc.id}}).expect(t, tc.status, tc.msg)
	}
	rotated := b.post(path("clients/rotate"), url.Values{"id": {clientID}})
	rotated.expect(t, http.StatusOK, "The client Svc has a new secret; the old one no longer works.", "<code>"+clientID+"</code>")
	if s := shownSecret(rotated); s == "" || s == secret {
		t.Fatalf("the rotated secret %q (was %q)", s, secret)
	}

	// API keys: the form's checks, then one that expires and one that does not.
	b.post(path("keys"), url.Values{"name": {"k"}}).expect(t, http.StatusBadRequest, "Choose the client the key is for")
	b.post(path("keys"), url.Values{"client_id": {clientID}, "expires_in": {"2160h"}}).
		expect(t, http.StatusBadRequest, "Enter a name for the key.", `<option value="`+clientID+`" selected>`, `<option value="2160h" selected>90 days</option>`)
	b.post(path("keys"), url.Values{"client_id": {clientID}, "name": {"Kept"}, "expires_in": {"forever"}}).
		expect(t, http.StatusBadRequest, `role="alert">`, `value="Kept"`)
	key := b.post(path("keys"), url.Values{"client_id": {clientID}, "name": {"CI"}, "expires_in": {"720h"}})
	key.expect(t, http.StatusCreated, "The API key CI is created. Copy it now: it is shown only once.", " UTC</td>")
	if got := jsonOf(t, e.tap.last(t, "POST /api/v1/orgs/"+org+"/apikeys").json(t)); got != `{"client_id":"`+clientID+`","expires_in":"720h","name":"CI"}` ||
		!strings.HasPrefix(shownSecret(key), "hx_") {
		t.Fatalf("create key sent %s; shown %q", got, shownSecret(key))
	}
	b.post(path("keys"), url.Values{"client_id": {clientID}, "name": {"Forever"}}).expect(t, http.StatusCreated, "<td data-label=\"Expires\">never</td>")
	if got := e.tap.last(t, "POST /api/v1/orgs/"+org+"/apikeys").json(t); got["expires_in"] != nil {
		t.Fatalf("a key that never expires sent %v", got)
	}
	keys, err := e.st.ListOrgAPIKeys(context.Background(), org)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %+v (%v)", keys, err)
	}
	var keyID string
	for _, k := range keys {
		if k.Name == "CI" {
			keyID = k.ID
		}
	}
	if _, err := e.db.Exec(context.Background(), `UPDATE api_keys SET last_used_at = '2026-01-02 03:04:00+00', use_count = 7 WHERE id = $1`, keyID); err != nil {
		t.Fatal(err)
	}
	b.get("/portal/credentials"+q).expect(t, http.StatusOK, "<td data-label=\"Last used\">2026-01-02 03:04 UTC</td><td data-label=\"Uses\">7</td>")

	// Rotate a key, with and without an overlap.
	b.post(path("keys/rotate"), url.Values{"id": {keyID}, "overlap": {"1h"}}).
		expect(t, http.StatusCreated, "The API key CI is rotated: the old key keeps working for 24 hours.")
	if got := jsonOf(t, e.tap.last(t, "POST /api/v1/orgs/"+org+"/apikeys/"+keyID+"/rotate").json(t)); got != `{"overlap":"1h"}` {
		t.Fatalf("rotate sent %s", got)
	}
	b.post(path("keys/rotate"), url.Values{"id": {keyID}, "overlap": {"1h"}}).expect(t, http.StatusConflict, `role="alert">`)
	b.post(path("keys/rotate"), url.Values{}).expect(t, http.StatusBadRequest, "Choose the client or key to change.")

	// Revoke, delete: back to the page with the notice.
	b.post(path("keys/revoke"), url.Values{"id": {keyID}}).redirect(t, "/portal/credentials?done=key-revoked&org="+org)
	b.get("/portal/credentials?done=key-revoked&org="+org).expect(t, http.StatusOK, "The API key is revoked.", "revoked 20")
	b.post(path("keys/revoke"), url.Values{"id": {"?"}}).expect(t, http.StatusBadRequest, "Choose the client or key to change.")
	b.post(path("keys/revoke"), url.Values{"id": {"00000000-0000-4000-8000-000000000000"}}).expect(t, http.StatusNotFound)
	b.post(path("clients/delete"), url.Values{"id": {"#"}}).expect(t, http.StatusBadRequest, "Choose the client or key to change.")
	b.post(path("clients/delete"), url.Values{"id": {"no-such-client"}}).expect(t, http.StatusNotFound)
	b.post(path("clients/delete"), url.Values{"id": {clientID}}).redirect(t, "/portal/credentials?done=client-deleted&org="+org)

	// The page when one of its three reads fails.
	e.tap.override(t, "GET /api/v1/orgs/"+org+"/apikeys", answer(http.StatusServiceUnavailable, "application/json",
		`{"error":"temporarily_unavailable","error_description":"the key store is busy"}`))
	b.get("/portal/credentials"+q).expect(t, http.StatusServiceUnavailable, "the key store is busy").lacks(t, "New client")
}
