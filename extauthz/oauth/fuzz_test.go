package oauth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzTokenRequest sends arbitrary bodies and Authorization headers to the
// token endpoint: no panic, no 5xx but 503 (the fake store answers
// "unavailable" for client id "down"), every refusal an OAuth2 error
// document, and a token only for a request that carried valid credentials.
func FuzzTokenRequest(f *testing.F) {
	e := newEnv(f)
	basic := func(id, s string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+s))
	}
	seeds := []struct{ body, auth string }{
		{"grant_type=client_credentials", basic("alpha", e.secrets["alpha"])},
		{"grant_type=client_credentials&client_id=beta&client_secret=" + e.secrets["beta"], ""},
		{"grant_type=client_credentials&scope=models%3Aread&audience=https%3A%2F%2Fapi.helix.test", basic("alpha", e.secrets["alpha"])},
		{"grant_type=client_credentials&client_id=down&client_secret=x", ""},
		{"grant_type=password&username=a&password=b", basic("alpha", "x")},
		{"grant_type=client_credentials&scope=%zz", ""},
		{"grant_type=client_credentials;scope=a", "Bearer x"},
		{"client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c&grant_type=client_credentials", ""},
		{"", basic("gamma", e.secrets["gamma"])},
		{"grant_type=client_credentials&grant_type=client_credentials", "Basic !!"},
		{"grant_type=client_credentials&client_id=%00&client_secret=' OR 1=1 --", ""},
	}
	for _, s := range seeds {
		f.Add(s.body, s.auth)
	}
	valid := func(id, s string) bool {
		return (id == "alpha" || id == "beta") && s == e.secrets[id]
	}
	f.Fuzz(func(t *testing.T, body, auth string) {
		r := httptest.NewRequest(http.MethodPost, PathToken, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth != "" {
			r.Header["Authorization"] = []string{auth}
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)

		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d for body %q auth %q: %s", w.Code, body, auth, w.Body)
		}
		if w.Code != http.StatusOK {
			var er errorResponse
			if err := json.Unmarshal(w.Body.Bytes(), &er); err != nil || er.Error == "" {
				t.Fatalf("status %d with body %q", w.Code, w.Body)
			}
			return
		}
		// Issued: the request must have carried one set of valid credentials.
		form, err := url.ParseQuery(body)
		if err != nil {
			t.Fatalf("token issued for an unparsable body %q", body)
		}
		check := httptest.NewRequest(http.MethodPost, "/", nil)
		check.Header["Authorization"] = []string{auth}
		ok := false
		if id, s, isBasic := check.BasicAuth(); isBasic {
			uid, err1 := url.QueryUnescape(id)
			us, err2 := url.QueryUnescape(s)
			ok = err1 == nil && err2 == nil && valid(uid, us)
		} else {
			ok = valid(form.Get("client_id"), form.Get("client_secret"))
		}
		if !ok || form.Get("grant_type") != "client_credentials" {
			t.Fatalf("token issued without valid credentials: body %q auth %q", body, auth)
		}
		var tr tokenResponse
		if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil || tr.AccessToken == "" {
			t.Fatalf("200 without a token: %s", w.Body)
		}
	})
}
