package accounts_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/password"
	"github.com/helixflow/helixflow/extauthz/session"
)

// Sign-up, verification, login, profile, logout: the whole first visit,
// mails read from mailpit.
func TestSignupVerifyLoginLogout(t *testing.T) {
	e := newEnv(t, options{})
	b := e.browser("198.51.100.1")
	a := b.call("POST", "/api/v1/signup", map[string]string{
		"email": "Ada@Example.test", "password": goodPassword, "display_name": "Ada", "organization": "Engines",
	})
	expect(t, a, 202, "")
	if got := a.json(t)["status"]; got != "verification_sent" {
		t.Errorf("status %v", got)
	}
	// The account exists once its mail is out (the insert follows the
	// answer). Before verification the right password says so, a wrong
	// one does not.
	tok := e.link("ada@example.test", "Confirm your email", "/verify-email")
	expect(t, b.call("POST", "/api/v1/login", map[string]string{"email": "ada@example.test", "password": "wrong password!"}), 401, "invalid_credentials")
	e.clock.Add(time.Hour) // past the throttle
	expect(t, b.call("POST", "/api/v1/login", map[string]string{"email": "ada@example.test", "password": goodPassword}), 403, "email_not_verified")

	// The page a mail scanner fetches does not use the token.
	page := b.call("GET", "/verify-email?token="+tok, nil)
	expect(t, page, 200, "")
	a = b.call("POST", "/api/v1/verify-email", map[string]string{"token": tok})
	expect(t, a, 200, "")
	if v := a.json(t); v["email_verified"] != true || v["email"] != "ada@example.test" || v["display_name"] != "Ada" {
		t.Errorf("user view %v", v)
	}
	expect(t, b.call("POST", "/api/v1/verify-email", map[string]string{"token": tok}), 400, "invalid_token")

	v := b.login("ada@example.test", goodPassword)
	sess := v["session"].(map[string]any)
	if b.cookie(session.CookieName) == "" || b.csrf == "" || sess["id"] == "" {
		t.Fatalf("login gave no cookie, CSRF token or session: %v", v)
	}
	a = b.call("GET", "/api/v1/account", nil)
	expect(t, a, 200, "")
	if a.header.Get(session.CSRFHeader) != b.csrf {
		t.Error("GET /api/v1/account does not hand back the session's CSRF token")
	}
	a = b.call("PATCH", "/api/v1/account", map[string]any{"display_name": "Ada L.", "preferences": map[string]any{"theme": "dark"}})
	expect(t, a, 200, "")
	if v := a.json(t); v["display_name"] != "Ada L." || v["organization"] != "Engines" || v["preferences"].(map[string]any)["theme"] != "dark" {
		t.Errorf("after PATCH: %v", v)
	}
	a = b.call("GET", "/api/v1/account/sessions", nil)
	expect(t, a, 200, "")
	list := a.json(t)["sessions"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["current"] != true || list[0].(map[string]any)["source"] != "198.51.100.1" {
		t.Errorf("sessions %v", list)
	}
	expect(t, b.call("POST", "/api/v1/logout", nil), 204, "")
	expect(t, b.call("GET", "/api/v1/account", nil), 401, "unauthorized")

	if len(e.audit.Find("account.signup", audit.ResultSuccess)) != 1 || len(e.audit.Find("account.login", audit.ResultSuccess)) != 1 ||
		len(e.audit.Find("account.logout", audit.ResultSuccess)) != 1 || len(e.audit.Find("account.login", audit.ResultFailure)) != 1 {
		t.Errorf("audit trail %+v", e.audit.Events())
	}
	for _, ev := range e.audit.Events() {
		if ev.Actor == "" || strings.Contains(ev.Actor, "@") || strings.Contains(ev.Target, "@") {
			t.Errorf("audit event names a person instead of a reference: %+v", ev)
		}
	}
}

// Sign-up and reset answer the same whether the address has an account.
func TestNoEnumeration(t *testing.T) {
	e := newEnv(t, options{})
	e.signedUp("known@example.test", "198.51.100.2")
	e.clock.Add(2 * time.Minute) // the per-address mail interval
	b := e.browser("198.51.100.3")
	for _, path := range []string{"/api/v1/signup", "/api/v1/password-reset"} {
		body := func(email string) map[string]string {
			if path == "/api/v1/signup" {
				return map[string]string{"email": email, "password": "another good passphrase"}
			}
			return map[string]string{"email": email}
		}
		known := b.call("POST", path, body("known@example.test"))
		unknown := b.call("POST", path, body("unknown@example.test"))
		if known.status != unknown.status || string(known.body) != string(unknown.body) {
			t.Errorf("%s answers differ: %d %s vs %d %s", path, known.status, known.body, unknown.status, unknown.body)
		}
		e.clock.Add(2 * time.Minute)
	}
	e.svc.Wait()
	if e.mails("known@example.test", "Sign-up attempt") != 1 {
		t.Error("the owner of a known address was not told of the sign-up attempt")
	}
	if e.mails("known@example.test", "Reset your") != 1 {
		t.Error("no reset mail to the known address")
	}
	// The attempt did not change the known account's password.
	e.browser("198.51.100.4").login("known@example.test", goodPassword)
}

// Password reset: the link works once, before it expires; the new
// password works, the old does not, every session ends.
func TestPasswordReset(t *testing.T) {
	e := newEnv(t, options{})
	old := e.signedUp("reset@example.test", "198.51.100.10")
	e.clock.Add(2 * time.Minute)
	b := e.browser("198.51.100.11")
	expect(t, b.call("POST", "/api/v1/password-reset", map[string]string{"email": "reset@example.test"}), 202, "")
	tok := e.link("reset@example.test", "Reset your", "/reset-password")
	expect(t, b.call("GET", "/reset-password?token="+tok, nil), 200, "") // GET keeps it
	expect(t, b.call("POST", "/api/v1/password-reset/confirm", map[string]string{"token": tok, "new_password": "password"}), 400, "invalid_request")
	expect(t, b.call("POST", "/api/v1/password-reset/confirm", map[string]string{"token": tok, "new_password": "a brand new passphrase"}), 204, "")
	expect(t, b.call("POST", "/api/v1/password-reset/confirm", map[string]string{"token": tok, "new_password": "yet another passphrase"}), 400, "invalid_token")
	expect(t, old.call("GET", "/api/v1/account", nil), 401, "unauthorized")
	e.clock.Add(time.Hour)
	expect(t, b.call("POST", "/api/v1/login", map[string]string{"email": "reset@example.test", "password": goodPassword}), 401, "invalid_credentials")
	e.clock.Add(time.Hour)
	b.login("reset@example.test", "a brand new passphrase")

	// An expired link is refused like a used one.
	e.clock.Add(2 * time.Minute)
	expect(t, b.call("POST", "/api/v1/password-reset", map[string]string{"email": "reset@example.test"}), 202, "")
	e.svc.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.db.Exec(ctx, `UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE used_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	tok = e.nthLink("reset@example.test", "Reset your", "/reset-password", 2)
	expect(t, b.call("POST", "/api/v1/password-reset/confirm", map[string]string{"token": tok, "new_password": "yet another passphrase"}), 400, "invalid_token")
	for _, bad := range []string{"", "short", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "'; DROP TABLE account_tokens; --xxxxxxxxxxxxx"} {
		expect(t, b.call("POST", "/api/v1/verify-email", map[string]string{"token": bad}), 400, "invalid_token")
	}
}

// Password change ends the other sessions, not the caller's; email change
// happens when the new address is confirmed.
func TestPasswordAndEmailChange(t *testing.T) {
	e := newEnv(t, options{})
	b := e.signedUp("change@example.test", "198.51.100.20")
	other := e.browser("198.51.100.21")
	other.login("change@example.test", goodPassword)

	expect(t, b.call("POST", "/api/v1/account/password", map[string]string{"current_password": "not the password", "new_password": "a brand new passphrase"}), 401, "invalid_credentials")
	e.clock.Add(time.Hour)
	expect(t, b.call("POST", "/api/v1/account/password", map[string]string{"current_password": goodPassword, "new_password": "change@example.test"}), 400, "invalid_request")
	expect(t, b.call("POST", "/api/v1/account/password", map[string]string{"current_password": goodPassword, "new_password": "a brand new passphrase"}), 204, "")
	expect(t, b.call("GET", "/api/v1/account", nil), 200, "")
	expect(t, other.call("GET", "/api/v1/account", nil), 401, "unauthorized")

	expect(t, b.call("POST", "/api/v1/account/email", map[string]string{"new_email": "new@example.test", "password": "a brand new passphrase"}), 202, "")
	if e.link("change@example.test", "being changed", "/reset-password") == "x" {
		t.Fatal("unreachable")
	}
	tok := e.link("new@example.test", "Confirm your new email", "/verify-email")
	a := b.call("GET", "/api/v1/account", nil)
	if a.json(t)["email"] != "change@example.test" {
		t.Error("the address changed before it was confirmed")
	}
	a = b.call("POST", "/api/v1/verify-email", map[string]string{"token": tok})
	expect(t, a, 200, "")
	if v := a.json(t); v["email"] != "new@example.test" || v["email_verified"] != true {
		t.Errorf("after confirming: %v", v)
	}
	if len(e.audit.Find("account.email_change", audit.ResultSuccess)) != 1 {
		t.Error("email change not audited")
	}
}

// Sessions: listing, ending one's own, another's is not found.
func TestSessionsEndAndDelete(t *testing.T) {
	e := newEnv(t, options{})
	a := e.signedUp("one@example.test", "198.51.100.30")
	b := e.signedUp("two@example.test", "198.51.100.31")
	second := e.browser("198.51.100.32")
	second.login("one@example.test", goodPassword)

	list := a.call("GET", "/api/v1/account/sessions", nil).json(t)["sessions"].([]any)
	if len(list) != 2 {
		t.Fatalf("sessions %v", list)
	}
	theirs := b.call("GET", "/api/v1/account/sessions", nil).json(t)["sessions"].([]any)[0].(map[string]any)["id"].(string)
	expect(t, a.call("DELETE", "/api/v1/account/sessions/"+theirs, nil), 404, "not_found")
	expect(t, a.call("DELETE", "/api/v1/account/sessions/not-a-uuid'--", nil), 404, "not_found")
	expect(t, b.call("GET", "/api/v1/account", nil), 200, "")
	var secondID string
	for _, s := range list {
		if m := s.(map[string]any); m["current"] != true {
			secondID = m["id"].(string)
		}
	}
	expect(t, a.call("DELETE", "/api/v1/account/sessions/"+secondID, nil), 204, "")
	expect(t, second.call("GET", "/api/v1/account", nil), 401, "unauthorized")

	a2 := a.call("GET", "/api/v1/account", nil).json(t)
	expect(t, a.call("GET", "/api/v1/account/export", nil), 200, "")
	expect(t, a.call("DELETE", "/api/v1/account", map[string]string{"password": "wrong password!"}), 401, "invalid_credentials")
	e.clock.Add(time.Hour)
	a3 := a.call("DELETE", "/api/v1/account", map[string]string{"password": goodPassword})
	expect(t, a3, 204, "")
	if len(e.gdpr.erased) != 1 || e.gdpr.erased[0] != a2["id"] || e.gdpr.by[0].Actor != "user:"+a2["id"].(string) {
		t.Errorf("erasure %v by %+v", e.gdpr.erased, e.gdpr.by)
	}
	if c := a3.header.Get("Set-Cookie"); !strings.Contains(c, session.CookieName+"=;") {
		t.Errorf("the cookie was not cleared: %q", c)
	}
}

// A login under a hash weaker than the current parameters rehashes it.
func TestLoginRehashes(t *testing.T) {
	raised := password.Params{MemoryKiB: password.Minimum.MemoryKiB, Iterations: password.Minimum.Iterations + 1, Parallelism: 1}
	e := newEnv(t, options{password: raised})
	e.signedUp("old@example.test", "198.51.100.40")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	minimum, err := password.New(password.Config{})
	if err != nil {
		t.Fatal(err)
	}
	weak, err := minimum.Hash(ctx, goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, `UPDATE users SET password_hash = $1`, weak); err != nil {
		t.Fatal(err)
	}
	e.browser("198.51.100.41").login("old@example.test", goodPassword)
	var stored string
	if err := e.db.QueryRow(ctx, `SELECT password_hash FROM users`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stored, "$m=19456,t=3,p=1$") {
		t.Errorf("the hash was not raised: %s", stored)
	}
	e.browser("198.51.100.42").login("old@example.test", goodPassword)
}
