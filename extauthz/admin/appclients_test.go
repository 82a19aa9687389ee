package admin_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/admin"
)

// Clients people sign in to: public or not, their redirect URIs and grant
// types are checked; a public client gets no secret.
func TestAppClients(t *testing.T) {
	e := newEnv(t, false)
	refused := []struct{ name, body, mention string }{
		{"public with client_credentials", `{"scopes":["models:read"],"public":true,"redirect_uris":["http://127.0.0.1/cb"],"grant_types":["client_credentials"]}`, "public"},
		{"public without a redirect", `{"scopes":["account"],"public":true}`, "redirect_uris"},
		{"refresh without code", `{"scopes":["models:read"],"grant_types":["client_credentials","refresh_token"]}`, "refresh_token"},
		{"unknown grant", `{"scopes":["models:read"],"grant_types":["password"]}`, "grant type"},
		{"implicit", `{"scopes":["models:read"],"grant_types":["implicit"]}`, "grant type"},
		{"grant twice", `{"scopes":["account"],"redirect_uris":["https://a.test/cb"],"grant_types":["authorization_code","authorization_code"]}`, "twice"},
		{"redirect without code", `{"scopes":["models:read"],"grant_types":["client_credentials"],"redirect_uris":["https://a.test/cb"]}`, "redirect_uris"},
		{"http redirect off loopback", `{"scopes":["account"],"redirect_uris":["http://a.test/cb"]}`, "https"},
		{"localhost redirect", `{"scopes":["account"],"redirect_uris":["http://localhost:8000/cb"]}`, "loopback"},
		{"custom scheme", `{"scopes":["account"],"redirect_uris":["com.example.app:/cb"]}`, "absolute"},
		{"javascript", `{"scopes":["account"],"redirect_uris":["javascript:alert(1)"]}`, "absolute"},
		{"relative", `{"scopes":["account"],"redirect_uris":["/cb"]}`, "absolute"},
		{"fragment", `{"scopes":["account"],"redirect_uris":["https://a.test/cb#x"]}`, "fragment"},
		{"empty fragment", `{"scopes":["account"],"redirect_uris":["https://a.test/cb#"]}`, "fragment"},
		{"userinfo", `{"scopes":["account"],"redirect_uris":["https://u@a.test/cb"]}`, "userinfo"},
		{"upper-case scheme", `{"scopes":["account"],"redirect_uris":["HTTPS://a.test/cb"]}`, "normal form"},
		{"no path", `{"scopes":["account"],"redirect_uris":["https://a.test"]}`, "path"},
		{"redirect twice", `{"scopes":["account"],"redirect_uris":["https://a.test/cb","https://a.test/cb"]}`, "twice"},
		{"too many redirects", `{"scopes":["account"],"redirect_uris":["https://a.test/1","https://a.test/2","https://a.test/3","https://a.test/4","https://a.test/5","https://a.test/6","https://a.test/7","https://a.test/8","https://a.test/9","https://a.test/10","https://a.test/11","https://a.test/12","https://a.test/13","https://a.test/14","https://a.test/15","https://a.test/16","https://a.test/17"]}`, "at most"},
		{"person's scope on a machine client", `{"scopes":["account"]}`, "person's scope"},
		{"admin scope on a machine client", `{"scopes":["models:read","helix:admin"]}`, "person's scope"},
		{"redirect with SQL", `{"scopes":["account"],"redirect_uris":["https://a.test/cb'; DROP TABLE clients;--"]}`, "normal form"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			writes := e.store.writes()
			code, body := e.doString(t, "POST", "/admin/v1/clients", tc.body)
			if code != http.StatusBadRequest {
				t.Fatalf("%d %s", code, body)
			}
			if msg := assertJSONError(t, body); !strings.Contains(msg, tc.mention) {
				t.Errorf("error %q does not mention %q", msg, tc.mention)
			}
			if e.store.writes() != writes {
				t.Error("a refused request wrote to the store")
			}
		})
	}

	code, body := e.doString(t, "POST", "/admin/v1/clients",
		`{"name":"cli","scopes":["account","models:read"],"public":true,"redirect_uris":["http://127.0.0.1/callback"]}`)
	if code != http.StatusCreated {
		t.Fatalf("public client: %d %s", code, body)
	}
	var v admin.ClientView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	if v.ClientSecret != "" || !v.Public || !slices.Equal(v.GrantTypes, []string{"authorization_code", "refresh_token"}) ||
		!slices.Equal(v.RedirectURIs, []string{"http://127.0.0.1/callback"}) {
		t.Fatalf("public client view: %+v", v)
	}
	if stored, _ := e.store.client(v.ClientID); len(stored.SecretHash) != 0 || !stored.Public {
		t.Fatalf("public client stored with a secret: %+v", stored)
	}

	if code, body := e.doString(t, "POST", "/admin/v1/clients/"+v.ClientID+"/rotate-secret", ""); code != http.StatusBadRequest || !strings.Contains(body, "public") {
		t.Fatalf("rotate a public client's secret: %d %s", code, body)
	}
	code, body = e.doString(t, "POST", "/admin/v1/clients",
		`{"scopes":["account"],"redirect_uris":["https://app.test/cb","http://[::1]:8080/cb"],"grant_types":["authorization_code"]}`)
	if code != http.StatusCreated || !strings.Contains(body, `"client_secret":"`) {
		t.Fatalf("confidential web client: %d %s", code, body)
	}
	// A machine client is what it was.
	code, body = e.doString(t, "POST", "/admin/v1/clients", `{"scopes":["models:read"]}`)
	if code != http.StatusCreated || !strings.Contains(body, `"grant_types":["client_credentials"]`) || !strings.Contains(body, `"public":false`) {
		t.Fatalf("machine client: %d %s", code, body)
	}
}
