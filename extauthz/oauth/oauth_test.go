package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/token"
)

var ccForm = url.Values{"grant_type": {"client_credentials"}}

// parseToken checks the JWS with the key set's public key and returns
// header and claims.
func parseToken(t *testing.T, e *env, raw string) (jose.Header, map[string]any) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		t.Fatalf("parse token: %v", err)
	}
	payload, err := jws.Verify(e.keys.signer.Public())
	if err != nil {
		t.Fatalf("token signature: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Protected, claims
}

func TestIssueToken(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256"} {
		for _, method := range []string{"client_secret_basic", "client_secret_post"} {
			t.Run(alg+"/"+method, func(t *testing.T) {
				e := newEnvKeys(t, newFakeKeys(t, alg))
				rq := request{path: PathToken, form: url.Values{"grant_type": {"client_credentials"}}}
				if method == "client_secret_basic" {
					rq.basic = e.basic("alpha")
				} else {
					rq.form.Set("client_id", "alpha")
					rq.form.Set("client_secret", e.secrets["alpha"])
				}
				w := e.do(t, rq)
				if w.Code != http.StatusOK {
					t.Fatalf("status %d: %s", w.Code, w.Body)
				}
				if got := w.Header().Get("Cache-Control"); got != "no-store" {
					t.Errorf("Cache-Control %q", got)
				}
				if got := w.Header().Get("Pragma"); got != "no-cache" {
					t.Errorf("Pragma %q", got)
				}
				if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type %q", ct)
				}
				var body map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
					t.Fatal(err)
				}
				if body["token_type"] != "Bearer" || body["expires_in"] != float64(300) ||
					body["scope"] != "models:infer models:read" {
					t.Fatalf("response %v", body)
				}
				if _, ok := body["refresh_token"]; ok {
					t.Fatal("refresh token issued")
				}

				hdr, c := parseToken(t, e, body["access_token"].(string))
				if hdr.ExtraHeaders[jose.HeaderType] != "at+jwt" || hdr.KeyID != e.keys.kid || hdr.Algorithm != alg {
					t.Fatalf("header typ=%v kid=%q alg=%q", hdr.ExtraHeaders[jose.HeaderType], hdr.KeyID, hdr.Algorithm)
				}
				now := float64(e.clock.now().Unix())
				want := map[string]any{
					"iss": testIssuer, "sub": "alpha", "aud": testAudience, "client_id": "alpha",
					"scope": "models:infer models:read", "iat": now, "nbf": now, "exp": now + 300,
					"helix_plan": "gold", "helix_models": []any{"resnet50", "bert"},
				}
				for k, v := range want {
					got := c[k]
					if s, ok := got.([]any); ok && k == "aud" && len(s) == 1 {
						got = s[0]
					}
					if fmt.Sprint(got) != fmt.Sprint(v) {
						t.Errorf("claim %s = %v, want %v", k, c[k], v)
					}
				}
				if jti, _ := c["jti"].(string); len(jti) < 16 {
					t.Errorf("jti %q", jti)
				}
				if _, ok := c["scp"]; ok {
					t.Error("token carries fosite's scp claim")
				}
				if len(c) != len(want)+1 {
					t.Errorf("unexpected claims: %v", c)
				}
			})
		}
	}
}

func TestTokensDiffer(t *testing.T) {
	e := newEnv(t)
	a, b := e.issue(t, "alpha", nil), e.issue(t, "alpha", nil)
	_, ca := parseToken(t, e, a.AccessToken)
	_, cb := parseToken(t, e, b.AccessToken)
	if ca["jti"] == cb["jti"] {
		t.Fatal("two tokens share a jti")
	}
}

func TestScopes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		client string
		scope  string
		want   string // granted scope, or the error code
		status int
	}{
		{"none asked: all", "alpha", "", "models:infer models:read", 200},
		{"subset", "alpha", "models:read", "models:read", 200},
		{"all asked", "alpha", "models:read models:infer", "models:read models:infer", 200},
		{"repeated", "alpha", "models:read models:read", "models:read", 200},
		{"extra spaces", "alpha", "  models:read  ", "models:read", 200},
		{"escalation", "beta", "models:infer", "invalid_scope", 400},
		{"one too many", "alpha", "models:read admin", "invalid_scope", 400},
		{"prefix is not a match", "alpha", "models", "invalid_scope", 400},
		{"case matters", "alpha", "Models:Read", "invalid_scope", 400},
		{"wildcard is literal", "alpha", "models:*", "invalid_scope", 400},
		{"sql", "alpha", "models:read' OR '1'='1", "invalid_scope", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}}
			if tt.scope != "" {
				form.Set("scope", tt.scope)
			}
			w := e.do(t, request{path: PathToken, form: form, basic: e.basic(tt.client)})
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status != 200 {
				if er := decodeError(t, w); er.Error != tt.want {
					t.Fatalf("error %q, want %q", er.Error, tt.want)
				}
				return
			}
			var tr tokenResponse
			_ = json.Unmarshal(w.Body.Bytes(), &tr)
			_, c := parseToken(t, e, tr.AccessToken)
			if tr.Scope != tt.want || c["scope"] != tt.want {
				t.Fatalf("granted %q (token %q), want %q", tr.Scope, c["scope"], tt.want)
			}
		})
	}
}

func TestNoScopesGranted(t *testing.T) {
	e := newEnv(t)
	e.clients.clients["empty"] = &store.Client{ID: "empty", SecretHash: secret.NewHasher([]byte(testPepper)).Hash("s3cret-s3cret"), Enabled: true}
	w := e.do(t, request{path: PathToken, form: ccForm, basic: []string{"empty", "s3cret-s3cret"}})
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var body map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	if _, ok := body["scope"]; ok {
		t.Fatalf("empty scope in response: %v", body)
	}
}

func TestClientAuthFailures(t *testing.T) {
	e := newEnv(t)
	// One character off (never the secret itself, whatever it starts with).
	wrong := "x" + e.secrets["alpha"][1:]
	if wrong == e.secrets["alpha"] {
		wrong = "y" + e.secrets["alpha"][1:]
	}
	tests := []struct {
		name  string
		basic []string
		form  url.Values
		hdr   map[string]string
		code  string
	}{
		{"basic wrong secret", []string{"alpha", wrong}, nil, nil, "invalid_client"},
		{"basic empty secret", []string{"alpha", ""}, nil, nil, "invalid_client"},
		{"basic another client's secret", []string{"alpha", e.secrets["beta"]}, nil, nil, "invalid_client"},
		{"basic unknown client", []string{"nobody", e.secrets["alpha"]}, nil, nil, "invalid_client"},
		{"basic disabled client", e.basic("gamma"), nil, nil, "invalid_client"},
		{"post wrong secret", nil, url.Values{"client_id": {"alpha"}, "client_secret": {wrong}}, nil, "invalid_client"},
		{"post no secret", nil, url.Values{"client_id": {"alpha"}}, nil, "invalid_client"},
		{"post disabled client", nil, url.Values{"client_id": {"gamma"}, "client_secret": {e.secrets["gamma"]}}, nil, "invalid_client"},
		{"post unknown client", nil, url.Values{"client_id": {"nobody"}, "client_secret": {"x"}}, nil, "invalid_client"},
		{"control characters in id", nil, url.Values{"client_id": {"al\x00pha"}, "client_secret": {"x"}}, nil, "invalid_client"},
		{"huge id", nil, url.Values{"client_id": {strings.Repeat("a", 1000)}, "client_secret": {"x"}}, nil, "invalid_client"},
		{"no credentials", nil, nil, nil, "invalid_client"},
		{"bearer scheme", nil, nil, map[string]string{"Authorization": "Bearer abc"}, "invalid_client"},
		{"malformed basic", nil, nil, map[string]string{"Authorization": "Basic !!!"}, "invalid_client"},
		{"client assertion", nil, url.Values{"client_id": {"alpha"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {"a.b.c"}}, nil, "invalid_client"},
		{"two methods", e.basic("alpha"), url.Values{"client_secret": {e.secrets["alpha"]}}, nil, "invalid_request"},
		{"basic and other client_id", e.basic("alpha"), url.Values{"client_id": {"beta"}}, nil, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}}
			for k, v := range tt.form {
				form[k] = v
			}
			w := e.do(t, request{path: PathToken, form: form, basic: tt.basic, header: tt.hdr})
			er := decodeError(t, w)
			if er.Error != tt.code {
				t.Fatalf("error %q, want %q (%s)", er.Error, tt.code, er.Description)
			}
			if tt.code == "invalid_client" {
				if w.Code != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401", w.Code)
				}
				if got := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic realm=") {
					t.Fatalf("WWW-Authenticate %q", got)
				}
			} else if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", w.Code)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Error("error response without Cache-Control: no-store")
			}
			for _, leak := range []string{e.secrets["alpha"], wrong, "not found", "disabled", "mismatch", "does not match"} {
				if strings.Contains(w.Body.String(), leak) {
					t.Fatalf("body leaks %q: %s", leak, w.Body)
				}
			}
		})
	}
}

// Unknown, disabled and wrong-secret clients must be indistinguishable.
func TestClientAuthFailuresLookAlike(t *testing.T) {
	e := newEnv(t)
	var bodies []string
	for _, b := range [][]string{{"alpha", "wrong"}, {"nobody", "wrong"}, e.basic("gamma")} {
		w := e.do(t, request{path: PathToken, form: ccForm, basic: b})
		bodies = append(bodies, fmt.Sprint(w.Code, w.Body.String()))
	}
	if bodies[0] != bodies[1] || bodies[1] != bodies[2] {
		t.Fatalf("responses differ:\n%s", strings.Join(bodies, "\n"))
	}
}

func TestGrantTypes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		grant string
		code  string
	}{
		{"", "invalid_request"},
		{"password", "unsupported_grant_type"},
		{"authorization_code", "unsupported_grant_type"},
		{"refresh_token", "unsupported_grant_type"},
		{"urn:ietf:params:oauth:grant-type:jwt-bearer", "unsupported_grant_type"},
		{"client_credentials password", "unsupported_grant_type"},
		{"CLIENT_CREDENTIALS", "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.grant, func(t *testing.T) {
			form := url.Values{"username": {"u"}, "password": {"p"}, "code": {"c"}}
			if tt.grant != "" {
				form.Set("grant_type", tt.grant)
			}
			w := e.do(t, request{path: PathToken, form: form, basic: e.basic("alpha")})
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if er := decodeError(t, w); er.Error != tt.code {
				t.Fatalf("error %q, want %q", er.Error, tt.code)
			}
		})
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t)
	good := ccForm.Encode()
	tests := []struct {
		name   string
		rq     request
		status int
	}{
		{"json body", request{body: `{"grant_type":"client_credentials"}`, ctype: "application/json"}, 400},
		{"no content type", request{body: good, ctype: "text/plain"}, 400},
		{"multipart", request{body: good, ctype: "multipart/form-data; boundary=x"}, 400},
		{"oversized", request{body: good + "&pad=" + strings.Repeat("a", MaxBodyBytes)}, 400},
		{"bad escape", request{body: "grant_type=client_credentials&scope=%zz"}, 400},
		{"semicolon", request{body: "grant_type=client_credentials;scope=x"}, 400},
		{"repeated grant_type", request{body: good + "&grant_type=client_credentials"}, 400},
		{"repeated scope", request{body: good + "&scope=models:read&scope=models:infer"}, 400},
		{"query string", request{body: good, path: PathToken + "?client_secret=x"}, 400},
		{"empty body", request{body: ""}, 400},
		{"GET", request{method: http.MethodGet}, 405},
		{"PUT", request{method: http.MethodPut, body: good}, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rq := tt.rq
			if rq.path == "" {
				rq.path = PathToken
			}
			rq.basic = e.basic("alpha")
			w := e.do(t, rq)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if er := decodeError(t, w); er.Error != "invalid_request" {
				t.Fatalf("error %q", er.Error)
			}
		})
	}
}

func TestAudience(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name     string
		client   string
		audience []string
		want     []string // nil: refused
	}{
		{"default", "alpha", nil, []string{testAudience}},
		{"allowed", "alpha", []string{"https://api.helix.test"}, []string{"https://api.helix.test"}},
		{"default named", "beta", []string{testAudience}, []string{testAudience}},
		{"two allowed", "alpha", []string{"https://api.helix.test " + testAudience}, []string{"https://api.helix.test", testAudience}},
		{"not the client's", "beta", []string{"https://api.helix.test"}, nil},
		{"prefix of allowed", "alpha", []string{"https://api.helix.test/sub"}, nil},
		{"unknown", "alpha", []string{"https://evil.test"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}}
			if tt.audience != nil {
				form["audience"] = tt.audience
			}
			w := e.do(t, request{path: PathToken, form: form, basic: e.basic(tt.client)})
			if tt.want == nil {
				if w.Code != http.StatusBadRequest || decodeError(t, w).Error != "invalid_request" {
					t.Fatalf("status %d: %s", w.Code, w.Body)
				}
				return
			}
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			var tr tokenResponse
			_ = json.Unmarshal(w.Body.Bytes(), &tr)
			_, c := parseToken(t, e, tr.AccessToken)
			var got []string
			switch a := c["aud"].(type) {
			case string:
				got = []string{a}
			case []any:
				for _, v := range a {
					got = append(got, v.(string))
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("aud %v, want %v", got, tt.want)
			}
		})
	}
}

// introspect asks about tok as the client by.
func (e *env) introspect(t *testing.T, by []string, tok string) (int, map[string]any) {
	t.Helper()
	w := e.do(t, request{path: PathIntrospect, form: url.Values{"token": {tok}}, basic: by})
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("introspection body %q: %v", w.Body, err)
	}
	return w.Code, body
}

func TestIntrospectRevoke(t *testing.T) {
	e := newEnv(t)
	tok := e.issue(t, "alpha", url.Values{"scope": {"models:read"}})
	_, claims := parseToken(t, e, tok.AccessToken)

	// Its own client may introspect it, and a holder of ScopeIntrospect.
	e.addClient(t, "auditor", ScopeIntrospect)
	for _, by := range []string{"alpha", "auditor"} {
		code, got := e.introspect(t, e.basic(by), tok.AccessToken)
		if code != http.StatusOK || got["active"] != true {
			t.Fatalf("introspection by %s: %d %v", by, code, got)
		}
		want := map[string]any{
			"scope": "models:read", "client_id": "alpha", "sub": "alpha", "aud": []any{testAudience},
			"iss": testIssuer, "exp": claims["exp"], "iat": claims["iat"], "nbf": claims["nbf"],
			"jti": claims["jti"], "token_type": "Bearer",
		}
		for k, v := range want {
			if fmt.Sprint(got[k]) != fmt.Sprint(v) {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
	}

	// Another client cannot revoke it.
	w := e.do(t, request{path: PathRevoke, form: url.Values{"token": {tok.AccessToken}}, basic: e.basic("beta")})
	if w.Code != http.StatusBadRequest || decodeError(t, w).Error != "unauthorized_client" {
		t.Fatalf("revocation by another client: %d %s", w.Code, w.Body)
	}
	if _, got := e.introspect(t, e.basic("auditor"), tok.AccessToken); got["active"] != true {
		t.Fatal("token inactive after a refused revocation")
	}

	// Its own client can (client_secret_post here).
	w = e.do(t, request{path: PathRevoke, form: url.Values{
		"token": {tok.AccessToken}, "token_type_hint": {"access_token"},
		"client_id": {"alpha"}, "client_secret": {e.secrets["alpha"]},
	}})
	if w.Code != http.StatusOK {
		t.Fatalf("revocation: %d %s", w.Code, w.Body)
	}
	exp, ok := e.revoked.revoked[claims["jti"].(string)]
	if !ok || exp.Unix() != int64(claims["exp"].(float64)) {
		t.Fatalf("revocation recorded %v, %v", exp, ok)
	}
	code, got := e.introspect(t, e.basic("auditor"), tok.AccessToken)
	if code != http.StatusOK || got["active"] != false || len(got) != 1 {
		t.Fatalf("revoked token: %d %v", code, got)
	}

	// Revoking again, or revoking garbage, is fine (RFC 7009 2.2).
	for _, tk := range []string{tok.AccessToken, "garbage", "a.b.c"} {
		w = e.do(t, request{path: PathRevoke, form: url.Values{"token": {tk}}, basic: e.basic("alpha")})
		if w.Code != http.StatusOK {
			t.Fatalf("revoking %q: %d %s", tk, w.Code, w.Body)
		}
	}
}

func TestIntrospectInactive(t *testing.T) {
	e := newEnv(t)
	tok := e.issue(t, "alpha", nil).AccessToken

	// A token signed by a key that is not in the JWKS.
	other := newFakeKeys(t, "ES256")
	other.kid = e.keys.kid
	forged := newEnvKeys(t, other).issue(t, "alpha", nil).AccessToken

	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + parts[1] + "A." + parts[2]

	// A token of another issuer, same key.
	foreign := newEnvKeys(t, e.keys, func(c *Config) { c.Issuer = "https://other.test" }).issue(t, "alpha", nil).AccessToken

	for name, tk := range map[string]string{
		"garbage": "garbage", "forged": forged, "tampered": tampered, "foreign issuer": foreign,
		"huge": strings.Repeat("a", 9000),
	} {
		t.Run(name, func(t *testing.T) {
			code, got := e.introspect(t, e.basic("alpha"), tk)
			if code != http.StatusOK || got["active"] != false || len(got) != 1 {
				t.Fatalf("%d %v", code, got)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		e.clock.add(5*time.Minute + time.Second)
		code, got := e.introspect(t, e.basic("alpha"), tok)
		if code != http.StatusOK || got["active"] != false {
			t.Fatalf("%d %v", code, got)
		}
	})
}

func TestIntrospectCallerAuth(t *testing.T) {
	e := newEnv(t)
	tok := e.issue(t, "alpha", nil).AccessToken
	tests := []struct {
		name   string
		rq     request
		code   string
		status int
	}{
		{"no auth", request{form: url.Values{"token": {tok}}}, "invalid_client", 401},
		{"wrong secret", request{form: url.Values{"token": {tok}}, basic: []string{"beta", "nope"}}, "invalid_client", 401},
		{"disabled client", request{form: url.Values{"token": {tok}}, basic: e.basic("gamma")}, "invalid_client", 401},
		{"bearer of the token itself", request{form: url.Values{"token": {tok}}, header: map[string]string{"Authorization": "Bearer " + tok}}, "invalid_client", 401},
		{"access_token parameter", request{form: url.Values{"token": {tok}, "access_token": {tok}}, basic: e.basic("beta")}, "invalid_request", 400},
		{"no token", request{form: url.Values{"x": {"y"}}, basic: e.basic("beta")}, "invalid_request", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rq.path = PathIntrospect
			w := e.do(t, tt.rq)
			if w.Code != tt.status || decodeError(t, w).Error != tt.code {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if tt.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

func TestRevokeCallerAuth(t *testing.T) {
	e := newEnv(t)
	tok := e.issue(t, "alpha", nil).AccessToken
	for name, rq := range map[string]request{
		"no auth":      {form: url.Values{"token": {tok}}},
		"wrong secret": {form: url.Values{"token": {tok}}, basic: []string{"alpha", "nope"}},
		"disabled":     {form: url.Values{"token": {tok}}, basic: e.basic("gamma")},
	} {
		t.Run(name, func(t *testing.T) {
			rq.path = PathRevoke
			w := e.do(t, rq)
			if w.Code != http.StatusUnauthorized || decodeError(t, w).Error != "invalid_client" {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if len(e.revoked.revoked) != 0 {
				t.Fatal("revoked without authentication")
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	down := fmt.Errorf("pg: %w", store.ErrUnavailable)
	tests := []struct {
		name   string
		break_ func(e *env)
		call   func(e *env, tok string) request
	}{
		{"clients: token", func(e *env) { e.clients.setErr(down) },
			func(e *env, _ string) request { return request{path: PathToken, form: ccForm, basic: e.basic("alpha")} }},
		{"clients: token by post", func(e *env) { e.clients.setErr(down) },
			func(e *env, _ string) request {
				return request{path: PathToken, form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"alpha"}, "client_secret": {"x"}}}
			}},
		{"signing key: token", func(e *env) { e.keys.setErr(errors.New("no key")) },
			func(e *env, _ string) request { return request{path: PathToken, form: ccForm, basic: e.basic("alpha")} }},
		{"clients: introspect", func(e *env) { e.clients.setErr(down) },
			func(e *env, tok string) request {
				return request{path: PathIntrospect, form: url.Values{"token": {tok}}, basic: e.basic("beta")}
			}},
		{"revocations: introspect", func(e *env) { e.revoked.setErr(down) },
			func(e *env, tok string) request {
				return request{path: PathIntrospect, form: url.Values{"token": {tok}}, basic: e.basic("beta")}
			}},
		{"jwks: introspect", func(e *env) { e.keys.setErr(errors.New("no keys")) },
			func(e *env, tok string) request {
				return request{path: PathIntrospect, form: url.Values{"token": {tok}}, basic: e.basic("beta")}
			}},
		{"revocations: revoke", func(e *env) { e.revoked.setErr(down) },
			func(e *env, tok string) request {
				return request{path: PathRevoke, form: url.Values{"token": {tok}}, basic: e.basic("alpha")}
			}},
		{"jwks: jwks", func(e *env) { e.keys.setErr(errors.New("no keys")) },
			func(e *env, _ string) request { return request{method: http.MethodGet, path: PathJWKS} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tok := e.issue(t, "alpha", nil).AccessToken
			tt.break_(e)
			w := e.do(t, tt.call(e, tok))
			if w.Code != http.StatusServiceUnavailable {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if er := decodeError(t, w); er.Error != "temporarily_unavailable" {
				t.Fatalf("error %q", er.Error)
			}
			if strings.Contains(w.Body.String(), "access_token") || strings.Contains(w.Body.String(), "pg:") ||
				strings.Contains(w.Body.String(), "active") {
				t.Fatalf("body says too much: %s", w.Body)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	e := newEnv(t)
	w := e.do(t, request{method: http.MethodGet, path: PathMetadata})
	if w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"issuer":                                testIssuer,
		"token_endpoint":                        testIssuer + "/oauth2/token",
		"jwks_uri":                              testIssuer + "/.well-known/jwks.json",
		"introspection_endpoint":                testIssuer + "/oauth2/introspect",
		"revocation_endpoint":                   testIssuer + "/oauth2/revoke",
		"grant_types_supported":                 "[client_credentials]",
		"token_endpoint_auth_methods_supported": "[client_secret_basic client_secret_post]",
		"introspection_endpoint_auth_methods_supported": "[client_secret_basic]",
		"scopes_supported": "[models:infer models:read]",
	}
	for k, v := range want {
		if got := fmt.Sprint(m[k]); got != v {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	if w := e.do(t, request{method: http.MethodPost, path: PathMetadata}); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST metadata: %d", w.Code)
	}
	if w := e.do(t, request{method: http.MethodGet, path: "/nope"}); w.Code != http.StatusNotFound {
		t.Errorf("unknown path: %d", w.Code)
	}
}

func TestJWKSPassthrough(t *testing.T) {
	e := newEnv(t)
	w := e.do(t, request{method: http.MethodGet, path: PathJWKS})
	if w.Code != http.StatusOK || w.Body.String() != string(e.keys.jwks) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("Content-Type %q", w.Header().Get("Content-Type"))
	}
	// A token issued here verifies with token.Verifier over that JWKS.
	tok := e.issue(t, "alpha", nil).AccessToken
	ks := &jwksKeys{p: e.keys}
	v, err := token.NewVerifier(token.VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: ks, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(t.Context(), tok)
	if err != nil || c.ClientID != "alpha" || c.Plan != "gold" {
		t.Fatalf("Verify: %+v %v", c, err)
	}
}

func TestJWKSWithoutAlg(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := jwksOf(t,
		jose.JSONWebKey{Key: &k.PublicKey, KeyID: "a"},
		jose.JSONWebKey{Key: &k.PublicKey, KeyID: "enc", Use: "enc"},
		jose.JSONWebKey{Key: &k.PublicKey},
	)
	got, err := parseJWKS(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["a"].alg != "ES256" {
		t.Fatalf("%+v", got)
	}
	if _, err := parseJWKS([]byte("{")); err == nil {
		t.Fatal("broken JWKS parsed")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) { c.Registerer = reg })
	e.issue(t, "alpha", nil)
	e.do(t, request{path: PathToken, form: ccForm, basic: []string{"alpha", "wrong"}})
	e.do(t, request{path: PathToken, form: url.Values{"grant_type": {"password"}}, basic: e.basic("alpha")})
	if got := testutil.ToFloat64(e.srv.metrics.issued.WithLabelValues("issued")); got != 1 {
		t.Errorf("issued = %v", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.issued.WithLabelValues("invalid_client")); got != 1 {
		t.Errorf("invalid_client = %v", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.issued.WithLabelValues("unsupported_grant_type")); got != 1 {
		t.Errorf("unsupported_grant_type = %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "helix_authz_token_duration_seconds"); err != nil || n != 1 {
		t.Errorf("histogram: %d %v", n, err)
	}
	// A second server on the same registry is refused, not silently unmeasured.
	if _, err := New(Config{Issuer: testIssuer, DefaultAudience: "a", Clients: e.clients, Revocations: e.revoked,
		Keys: e.keys, Hasher: secret.NewHasher(nil), Registerer: reg}); err == nil {
		t.Error("duplicate registration accepted")
	}
}

func TestNewConfig(t *testing.T) {
	e := newEnv(t)
	base := func() Config {
		return Config{Issuer: testIssuer, DefaultAudience: testAudience, Clients: e.clients,
			Revocations: e.revoked, Keys: e.keys, Hasher: secret.NewHasher(nil)}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"ok", func(*Config) {}, true},
		{"localhost http", func(c *Config) { c.Issuer = "http://127.0.0.1:8080" }, true},
		{"trailing slash", func(c *Config) { c.Issuer = testIssuer + "/" }, true},
		{"http", func(c *Config) { c.Issuer = "http://authz.helix.test" }, false},
		{"no scheme", func(c *Config) { c.Issuer = "authz.helix.test" }, false},
		{"query", func(c *Config) { c.Issuer = testIssuer + "?a=b" }, false},
		{"fragment", func(c *Config) { c.Issuer = testIssuer + "#x" }, false},
		{"no audience", func(c *Config) { c.DefaultAudience = "" }, false},
		{"no clients", func(c *Config) { c.Clients = nil }, false},
		{"no revocations", func(c *Config) { c.Revocations = nil }, false},
		{"no keys", func(c *Config) { c.Keys = nil }, false},
		{"no hasher", func(c *Config) { c.Hasher = nil }, false},
		{"lifetime 1h", func(c *Config) { c.TokenLifetime = time.Hour }, true},
		{"lifetime over 1h", func(c *Config) { c.TokenLifetime = time.Hour + time.Second }, false},
		{"negative lifetime", func(c *Config) { c.TokenLifetime = -time.Second }, false},
		{"tiny lifetime", func(c *Config) { c.TokenLifetime = time.Millisecond }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mod(&c)
			_, err := New(c)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestTokenLifetime(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TokenLifetime = 90 * time.Second })
	tr := e.issue(t, "alpha", nil)
	_, c := parseToken(t, e, tr.AccessToken)
	if tr.ExpiresIn != 90 || c["exp"].(float64)-c["iat"].(float64) != 90 {
		t.Fatalf("expires_in %d, exp-iat %v", tr.ExpiresIn, c["exp"].(float64)-c["iat"].(float64))
	}
}

func TestIntrospectNotYetValid(t *testing.T) {
	e := newEnv(t)
	now := e.clock.now()
	c := token.Claims{Issuer: testIssuer, Subject: "alpha", Audience: []string{testAudience}, ClientID: "alpha",
		JTI: "early", IssuedAt: now, NotBefore: now.Add(10 * time.Second), ExpiresAt: now.Add(time.Minute)}
	raw, err := token.Sign(c, e.keys.signer, e.keys.kid, e.keys.alg)
	if err != nil {
		t.Fatal(err)
	}
	// Within the verifier's leeway, but not yet valid by this server's clock.
	if _, got := e.introspect(t, e.basic("alpha"), raw); got["active"] != false {
		t.Fatalf("not-yet-valid token active: %v", got)
	}
	e.clock.add(10 * time.Second)
	if _, got := e.introspect(t, e.basic("alpha"), raw); got["active"] != true {
		t.Fatalf("valid token inactive: %v", got)
	}
}

// Run with -race: concurrent issuance, introspection and revocation.
func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t)
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			id := []string{"alpha", "beta"}[i%2]
			for range 10 {
				w := e.do(t, request{path: PathToken, form: ccForm, basic: e.basic(id)})
				var tr tokenResponse
				if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil || w.Code != 200 {
					errs <- fmt.Errorf("token: %d %s", w.Code, w.Body)
					return
				}
				w = e.do(t, request{path: PathIntrospect, form: url.Values{"token": {tr.AccessToken}}, basic: e.basic(id)})
				if !strings.Contains(w.Body.String(), `"active":true`) {
					errs <- fmt.Errorf("introspect: %d %s", w.Code, w.Body)
					return
				}
				w = e.do(t, request{path: PathRevoke, form: url.Values{"token": {tr.AccessToken}}, basic: e.basic(id)})
				if w.Code != 200 {
					errs <- fmt.Errorf("revoke: %d %s", w.Code, w.Body)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(e.revoked.revoked) != 80 {
		t.Fatalf("%d revocations recorded, want 80", len(e.revoked.revoked))
	}
}
