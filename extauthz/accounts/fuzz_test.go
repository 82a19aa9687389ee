package accounts

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/helixflow/helixflow/extauthz/webapi"
)

// FuzzRequests feeds arbitrary bodies through the strict decoder and the
// validation of every request: nothing panics, bad input gets a 4xx with
// a description, and what is accepted is what the database can hold.
func FuzzRequests(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@example.test","password":"correct horse battery staple"}`,
		`{"email":"A@Example.test","password":"x","display_name":"Ada","organization":"'; DROP TABLE users; --"}`,
		`{"display_name":"a\u0000b","preferences":{"k":"\u0000"}}`,
		`{"preferences":{"a":[1,{"b":null}]}}`,
		`{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","new_password":"é"}`,
		`{"new_email":"x@[127.0.0.1]","password":"p"}`,
		`{"email":"\"quoted\"@example.test"}`,
		`[]`, `{`, `{"email":1}`, ``, `{"a":1}{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var sign signupRequest
		if decodeOK(t, body, &sign) {
			if email, err := normEmail("email", sign.Email); err == nil {
				storable(t, email)
				if len(email) > maxEmailBytes || email != strings.ToLower(email) || !strings.Contains(email, "@") {
					t.Errorf("accepted email %q", email)
				}
			} else {
				described(t, err)
			}
			for _, v := range []string{sign.DisplayName, sign.Organization} {
				if err := name("display_name", v); err == nil {
					storable(t, v)
					if utf8.RuneCountInString(v) > maxNameRunes {
						t.Errorf("accepted a name of %d characters", utf8.RuneCountInString(v))
					}
				} else {
					described(t, err)
				}
			}
			if err := passwordField("password", sign.Password); err != nil {
				described(t, err)
			}
		}
		var prof profileRequest
		if decodeOK(t, body, &prof) && prof.Preferences != nil {
			if out, err := preferences(prof.Preferences); err == nil {
				var m map[string]any
				if json.Unmarshal(out, &m) != nil || m == nil || bytes.Contains(out, []byte(`\u0000`)) {
					t.Errorf("accepted preferences %q", out)
				}
			} else {
				described(t, err)
			}
		}
		var tok resetConfirmRequest
		if decodeOK(t, body, &tok) {
			if err := tokenField(tok.Token); err == nil {
				if len(tok.Token) != 43 {
					t.Errorf("accepted token %q", tok.Token)
				}
			} else if err != errInvalidToken {
				t.Errorf("token error %v", err)
			}
		}
	})
}

// decodeOK decodes body as the API does; a refusal must be a 4xx with a
// description.
func decodeOK(t *testing.T, body []byte, v any) bool {
	t.Helper()
	r := httptest.NewRequest("POST", "/api/v1/x", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	if webapi.Decode(w, r, v) {
		return true
	}
	var e webapi.ErrorBody
	if w.Code < 400 || w.Code >= 500 || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" || e.Description == "" {
		t.Errorf("refusal %d %q", w.Code, w.Body)
	}
	return false
}

// storable: what Postgres text holds and a one-line field should.
func storable(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		t.Errorf("accepted %q", s)
	}
}

func described(t *testing.T, err error) {
	t.Helper()
	e, ok := err.(*apiError)
	if !ok || e.status != http.StatusBadRequest || e.desc == "" {
		t.Errorf("refusal %v is not a described 400", err)
	}
}
