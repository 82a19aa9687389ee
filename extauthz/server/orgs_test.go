package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/helixflow/helixflow/extauthz/mail"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/mailtest"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// person is a signed-in browser session on a replica's public port.
type person struct {
	base, cookie, csrf string
}

func (p *person) call(t *testing.T, method, path string, body, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	// A __Host- cookie is Secure: set by hand over the test's plain http.
	req.Header.Set("Cookie", session.CookieName+"="+p.cookie)
	req.Header.Set(session.CSRFHeader, p.csrf)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return resp.StatusCode, string(data)
}

// signIn makes a verified account (as the accounts package would after
// sign-up and verification) and logs in through the public port.
func signIn(t *testing.T, dsn string, r *replica, email string) *person {
	t.Helper()
	const pw = "a long enough passphrase for tests"
	peopletest.AddUser(t, pgtest.Pool(t, dsn), peopletest.User{Email: email, Verified: true, Password: pw})
	b, _ := json.Marshal(map[string]string{"email": email, "password": pw})
	resp, err := http.Post(r.public.URL+"/api/v1/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		CSRF string `json:"csrf_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	p := &person{base: r.public.URL, csrf: out.CSRF}
	for _, c := range resp.Cookies() {
		if c.Name == session.CookieName {
			p.cookie = c.Value
		}
	}
	if p.cookie == "" || p.csrf == "" {
		t.Fatal("login set no session cookie or CSRF token")
	}
	return p
}

// peopleReplicas starts two replicas serving people (mail to a mailpit)
// on one fresh database, and signs email in on the first.
func peopleReplicas(t *testing.T, email string) (a, b *replica, p *person) {
	t.Helper()
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	mp := mailtest.Start(t, mailtest.Options{})
	smtp, err := mail.NewSMTP(mail.SMTPConfig{Address: mp.SMTP, TLS: mail.TLSNone, From: "helix@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	withPeople := func(c *Config) { c.Mail = smtp }
	a, b = startReplica(t, dsn, withPeople), startReplica(t, dsn, withPeople)
	return a, b, signIn(t, dsn, a, email)
}

// TestOrganizationKeysAtCheck: a person signs in, makes an organization,
// a client and an API key on the public port; the key works at Check on
// that replica when the answer arrives and on another within a second; a
// rotation with no overlap ends the old key on both within a second.
func TestOrganizationKeysAtCheck(t *testing.T) {
	a, b, p := peopleReplicas(t, "dev@example.test")

	var org struct{ ID string }
	if code, body := p.call(t, "POST", "/api/v1/orgs", map[string]any{"name": "Acme"}, &org); code != http.StatusCreated {
		t.Fatalf("create organization: %d %s", code, body)
	}
	base := "/api/v1/orgs/" + org.ID
	var cl struct {
		ClientID string `json:"client_id"`
		Plan     string `json:"plan"`
	}
	if code, body := p.call(t, "POST", base+"/clients", map[string]any{"name": "app", "scopes": []string{"models:infer"}, "models": []string{"*"}}, &cl); code != http.StatusCreated || cl.Plan != "free" {
		t.Fatalf("create client: %d %s", code, body)
	}
	// The default policy allows only the gateway's default plan.
	if code, body := p.call(t, "POST", base+"/clients", map[string]any{"scopes": []string{"models:infer"}, "plan": "gold"}, nil); code != http.StatusForbidden || !strings.Contains(body, "gold") {
		t.Fatalf("client with a plan outside the policy: %d %s", code, body)
	}
	var key struct{ ID, Key string }
	if code, body := p.call(t, "POST", base+"/apikeys", map[string]any{"client_id": cl.ClientID, "name": "ci"}, &key); code != http.StatusCreated {
		t.Fatalf("create key: %d %s", code, body)
	}
	if code, _ := checkCode(t, a, inferCheck(t, key.Key, "simple")); code != codes.OK {
		t.Fatalf("new organization key at the replica that made it: %v", code)
	}
	waitCode(t, b, "an organization's new key", key.Key, "simple", codes.OK)

	var next struct{ ID, Key string }
	if code, body := p.call(t, "POST", base+"/apikeys/"+key.ID+"/rotate", map[string]any{"overlap": "0s"}, &next); code != http.StatusCreated {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if code, _ := checkCode(t, a, inferCheck(t, next.Key, "simple")); code != codes.OK {
		t.Fatalf("rotated key at once: %v", code)
	}
	waitCode(t, a, "the old key after a rotation without overlap", key.Key, "simple", codes.Unauthenticated)
	waitCode(t, b, "the old key after a rotation without overlap", key.Key, "simple", codes.Unauthenticated)

	// Without the session's CSRF token, a cookie change is refused.
	p.csrf = "wrong"
	if code, body := p.call(t, "DELETE", base, nil, nil); code != http.StatusForbidden || !strings.Contains(body, "csrf_failed") {
		t.Fatalf("delete without the CSRF token: %d %s", code, body)
	}
}
