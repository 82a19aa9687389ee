package portal

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/mailtest"
)

// mailedToken waits for the mail to to whose subject has subject, and
// returns the token of its link to path.
func (e *dataEnv) mailedToken(to, subject, path string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := e.mail.API.WaitFor(ctx, to, subject)
	if err != nil {
		e.t.Fatal(err)
	}
	link, err := url.Parse(mailtest.Link(m, path))
	if err != nil || link.Query().Get("token") == "" {
		e.t.Fatalf("no %s link with a token in %q (%v)", path, m.Text, err)
	}
	return link.Query().Get("token")
}

// postPastThrottle is post, again while the answer is 429: a wrong
// password throttles the source's password checks for a moment.
func (b *dataBrowser) postPastThrottle(path string, form url.Values) page {
	b.e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p := b.post(path, form)
		if p.status != http.StatusTooManyRequests || time.Now().After(deadline) {
			return p
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSignupVerifySignin: the sign-up form's own checks, what it sends to
// the API and how it shows the API's refusals; the mailed link's token
// through the verify page; sign-in's refusals, its session cookie and
// where it goes on to.
func TestSignupVerifySignin(t *testing.T) {
	e := newDataEnv(t, dataOptions{mail: true})
	b := e.browser("")
	b.get("/portal/signup").expect(t, http.StatusOK, `action="/portal/signup"`, `name="password_confirm"`)

	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		msg    string
	}{
		{"no email", url.Values{"password": {testPassword}, "password_confirm": {testPassword}}, http.StatusBadRequest,
			"Enter an email address and a password."},
		{"no password", url.Values{"email": {"new@example.test"}}, http.StatusBadRequest, "Enter an email address and a password."},
		{"passwords differ", url.Values{"email": {"new@example.test"}, "display_name": {"Ada <Lovelace>"},
			"password": {testPassword}, "password_confirm": {testPassword + "!"}}, http.StatusBadRequest,
			"The two passwords differ; type the same password twice."},
		// The API's refusal, as a sentence.
		{"the API refuses the address", url.Values{"email": {"not-an-address"}, "password": {testPassword},
			"password_confirm": {testPassword}}, http.StatusBadRequest, "Email is not an email address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := b.post("/portal/signup", tc.form)
			p.expect(t, tc.status, `role="alert">`+tc.msg, `value="`+tc.form.Get("email")+`"`)
			p.lacks(t, testPassword)
		})
	}
	if got := b.post("/portal/signup", url.Values{"email": {"x@example.test"}, "display_name": {"Ada <Lovelace>"},
		"password": {"pw-one-long-enough"}, "password_confirm": {"pw-two-long-enough"}}); !strings.Contains(got.body, `value="Ada &lt;Lovelace&gt;"`) {
		t.Errorf("a refused sign-up does not keep the name, escaped: %s", got.body)
	}
	if n := e.tap.count("POST /api/v1/signup"); n != 1 {
		t.Fatalf("the form's own refusals reached the API: %d sign-ups sent, want 1 (the bad address)", n)
	}

	b.post("/portal/signup", url.Values{"email": {" new@example.test "}, "display_name": {"Ada"}, "organization": {"Acme"},
		"password": {testPassword}, "password_confirm": {testPassword}}).redirect(t, "/portal/signin?done=signup")
	if got, want := jsonOf(t, e.tap.last(t, "POST /api/v1/signup").json(t)),
		jsonOf(t, map[string]string{"email": "new@example.test", "password": testPassword, "display_name": "Ada", "organization": "Acme"}); got != want {
		t.Fatalf("sign-up sent %s, want %s", got, want)
	}
	b.get("/portal/signin?done=signup").expect(t, http.StatusOK, `role="status">Check your inbox`)
	token := e.mailedToken("new@example.test", "Confirm your email address", "/verify-email")

	// Not verified yet: the page says what to do instead of the API's code.
	b.post("/portal/signin", url.Values{"email": {"new@example.test"}, "password": {testPassword}}).
		expect(t, http.StatusForbidden, "Your address is not verified yet: follow the link we mailed you when you signed up.")

	// The mailed link's GET shows a button only; the POST uses the token.
	b.get("/portal/verify?token="+url.QueryEscape(token)).expect(t, http.StatusOK, `name="token" value="`+token+`"`)
	b.get("/portal/verify").expect(t, http.StatusOK, "Open the link in the mail").lacks(t, `name="token"`)
	if n := e.tap.count("POST /api/v1/verify-email"); n != 0 {
		t.Fatalf("a GET of the verify page used the token (%d calls)", n)
	}
	b.post("/portal/verify", url.Values{}).expect(t, http.StatusBadRequest, "The link has no token: open the whole link from the mail.")
	b.post("/portal/verify", url.Values{"token": {"not-a-token"}}).
		expect(t, http.StatusBadRequest, "The link is unknown, already used or expired; ask for a new one.")
	b.post("/portal/verify", url.Values{"token": {token}}).redirect(t, "/portal/signin?done=verified")
	if got := e.tap.last(t, "POST /api/v1/verify-email").json(t)["token"]; got != token {
		t.Fatalf("verify sent token %v", got)
	}
	b.get("/portal/signin?done=verified").expect(t, http.StatusOK, "Your address is verified. You can sign in now.")
	b.get("/portal/signin?done=no-such-notice").lacks(t, `role="status"`)

	// Sign-in's own check, then the API's refusal (under another address:
	// a wrong password throttles the source for a moment).
	b.post("/portal/signin", url.Values{"email": {"new@example.test"}}).
		expect(t, http.StatusBadRequest, "Enter your email address and your password.")
	b.post("/portal/signin", url.Values{"email": {"nobody@example.test"}, "password": {"wrong password"}}).
		expect(t, http.StatusUnauthorized, `role="alert">The email address or the password is wrong.`, `value="nobody@example.test"`)
	// An unsafe next goes home; the session cookie the API set is passed on.
	p := b.postPastThrottle("/portal/signin", url.Values{"email": {"new@example.test"}, "password": {testPassword},
		"next": {"https://evil.example/portal/"}})
	p.redirect(t, "/portal/")
	if !strings.Contains(strings.Join(p.header.Values("Set-Cookie"), "\n"), session.CookieName+"=") {
		t.Fatalf("sign-in passed no session cookie on: %v", p.header.Values("Set-Cookie"))
	}
	// Signed in, the sign-in and sign-up pages go on instead.
	b.get("/portal/signin?next=/portal/profile").redirect(t, "/portal/profile")
	b.get("/portal/signup").redirect(t, "/portal/")
	b.get("/portal/profile").expect(t, http.StatusOK, "new@example.test")
}

// TestSigninAPIDown: a 5xx from the API is our failure: a general message
// and 503, never the API's own text.
func TestSigninAPIDown(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	e.tap.override(t, "POST /api/v1/login", answer(http.StatusInternalServerError, "application/json",
		`{"error":"server_error","error_description":"pq: connection refused"}`))
	p := e.browser("").post("/portal/signin", url.Values{"email": {"a@example.test"}, "password": {testPassword}})
	p.expect(t, http.StatusServiceUnavailable, "That could not be done right now; try again shortly.")
	p.lacks(t, "connection refused")
}

// TestPasswordReset: the reset forms' own checks, the mailed link, and a
// sign-in with the new password.
func TestPasswordReset(t *testing.T) {
	e := newDataEnv(t, dataOptions{mail: true})
	e.person("forgot@example.test")
	b := e.browser("")
	b.get("/portal/reset").expect(t, http.StatusOK, `action="/portal/reset"`).lacks(t, `name="token"`)
	b.post("/portal/reset", url.Values{"email": {"  "}}).expect(t, http.StatusBadRequest, "Enter the email address of your account.")
	b.post("/portal/reset", url.Values{"email": {"forgot@example.test"}}).redirect(t, "/portal/reset?done=reset-sent")
	if got := e.tap.last(t, "POST /api/v1/password-reset").json(t)["email"]; got != "forgot@example.test" {
		t.Fatalf("reset sent email %v", got)
	}
	b.get("/portal/reset?done=reset-sent").expect(t, http.StatusOK, "If that address has an account, a link to set a new password is on its way.")
	token := e.mailedToken("forgot@example.test", "Reset your HelixFlow password", "/reset-password")
	b.get("/portal/reset?token="+url.QueryEscape(token)).expect(t, http.StatusOK, `action="/portal/reset/confirm"`, `value="`+token+`"`)

	const newPW = "a brand new passphrase"
	for _, tc := range []struct {
		name string
		form url.Values
		msg  string
	}{
		{"no token", url.Values{"new_password": {newPW}, "new_password_confirm": {newPW}}, "The link has no token: open the whole link from the mail."},
		{"no password", url.Values{"token": {token}}, "Enter a new password."},
		{"passwords differ", url.Values{"token": {token}, "new_password": {newPW}, "new_password_confirm": {newPW + "?"}},
			"The two passwords differ; type the same password twice."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.post("/portal/reset/confirm", tc.form).expect(t, http.StatusBadRequest, tc.msg)
		})
	}
	if n := e.tap.count("POST /api/v1/password-reset/confirm"); n != 0 {
		t.Fatalf("the form's own refusals reached the API (%d calls)", n)
	}
	// The API refuses a bad token; the form keeps the token it was given.
	b.post("/portal/reset/confirm", url.Values{"token": {"stale"}, "new_password": {newPW}, "new_password_confirm": {newPW}}).
		expect(t, http.StatusBadRequest, "The link is unknown, already used or expired; ask for a new one.", `value="stale"`)
	b.post("/portal/reset/confirm", url.Values{"token": {token}, "new_password": {newPW}, "new_password_confirm": {newPW}}).
		redirect(t, "/portal/signin?done=password-reset")
	if got := e.tap.last(t, "POST /api/v1/password-reset/confirm").json(t); got["token"] != token || got["new_password"] != newPW {
		t.Fatalf("reset confirm sent %v", got)
	}
	b.get("/portal/signin?done=password-reset").expect(t, http.StatusOK, "Your password is set. Sign in with it.")
	b.post("/portal/signin", url.Values{"email": {"forgot@example.test"}, "password": {newPW}, "next": {"/portal/sessions"}}).
		redirect(t, "/portal/sessions")
}

// TestSignout: signing out ends the session (the API's cookie clearing
// passed on); anonymous, it only goes home; the API's failure is shown.
func TestSignout(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	uid := e.person("out@example.test")

	e.browser("").post("/portal/signout", url.Values{}).redirect(t, "/portal/?done=signed-out")
	if n := e.tap.count("POST /api/v1/logout"); n != 0 {
		t.Fatalf("an anonymous sign-out called the API (%d)", n)
	}

	b := e.browser(uid)
	e.tap.override(t, "POST /api/v1/logout", answer(http.StatusBadGateway, "text/plain", "the session store is away\n"))
	b.post("/portal/signout", url.Values{}).expect(t, http.StatusBadGateway, "the session store is away")
	e.tap.override(t, "POST /api/v1/logout", nil) // the real API again

	p := b.post("/portal/signout", url.Values{})
	p.redirect(t, "/portal/?done=signed-out")
	if got := e.tap.last(t, "POST /api/v1/logout").Header.Get(session.CSRFHeader); got == "" {
		t.Fatal("sign-out was sent without the session's CSRF token")
	}
	if !strings.Contains(strings.Join(p.header.Values("Set-Cookie"), "\n"), session.CookieName+"=;") {
		t.Errorf("the session cookie was not cleared: %v", p.header.Values("Set-Cookie"))
	}
	b.get("/portal/?done=signed-out").expect(t, http.StatusOK, "You are signed out.", `href="/portal/signin"`)
	b.get("/portal/profile").redirect(t, "/portal/signin?next=%2Fportal%2Fprofile")
}

// TestProfileForms: the profile's forms: their own checks (the refused
// values kept), what they send, and the API's answers.
func TestProfileForms(t *testing.T) {
	e := newDataEnv(t, dataOptions{mail: true})
	uid := e.person("me@example.test")
	b := e.browser(uid)
	b.get("/portal/profile").expect(t, http.StatusOK, "<strong>me@example.test</strong>", "member since ")

	// Profile.
	b.post("/portal/profile", url.Values{"display_name": {" Grace "}, "organization": {"Navy"}}).redirect(t, "/portal/profile?done=profile-saved")
	if got := e.tap.last(t, "PATCH /api/v1/account").json(t); got["display_name"] != "Grace" || got["organization"] != "Navy" {
		t.Fatalf("profile sent %v", got)
	}
	b.get("/portal/profile?done=profile-saved").expect(t, http.StatusOK, "Your profile is saved.", `value="Grace"`, `value="Navy"`)
	long := strings.Repeat("é", 201)
	b.post("/portal/profile", url.Values{"display_name": {long}, "organization": {"Navy"}}).
		expect(t, http.StatusBadRequest, `role="alert">`, "at most 200 are allowed.", `value="`+long+`"`)
	e.tap.override(t, "PATCH /api/v1/account", answer(http.StatusInternalServerError, "", ""))
	b.post("/portal/profile", url.Values{"display_name": {"Kept"}}).
		expect(t, http.StatusServiceUnavailable, "That could not be done right now; try again shortly.", `value="Kept"`)

	// Password: the form's checks, then a change, then a wrong one.
	const newPW = "another passphrase for tests"
	for _, tc := range []struct {
		form url.Values
		msg  string
	}{
		{url.Values{"new_password": {newPW}, "new_password_confirm": {newPW}}, "Enter your current password and a new one."},
		{url.Values{"current_password": {testPassword}, "new_password": {newPW}, "new_password_confirm": {"x"}},
			"The two new passwords differ; type the same password twice."},
	} {
		b.post("/portal/profile/password", tc.form).expect(t, http.StatusBadRequest, tc.msg, "<strong>me@example.test</strong>")
	}
	b.post("/portal/profile/password", url.Values{"current_password": {testPassword}, "new_password": {newPW},
		"new_password_confirm": {newPW}}).redirect(t, "/portal/profile?done=password-changed")
	if got := e.tap.last(t, "POST /api/v1/account/password").json(t); got["current_password"] != testPassword || got["new_password"] != newPW {
		t.Fatalf("password change sent %v", got)
	}
	// The API's refusals (stood in for: a real wrong password throttles
	// the source; the email form below has one) show on the page.
	e.tap.override(t, "POST /api/v1/account/password", answer(http.StatusBadRequest, "application/json",
		`{"error":"invalid_request","error_description":"new_password: it is a common password"}`))
	b.post("/portal/profile/password", url.Values{"current_password": {newPW}, "new_password": {"password123"},
		"new_password_confirm": {"password123"}}).expect(t, http.StatusBadRequest, `role="alert">New_password: it is a common password.`)

	// Email: the form keeps the new address when refused.
	b.post("/portal/profile/email", url.Values{"new_email": {"new-me@example.test"}}).
		expect(t, http.StatusBadRequest, "Enter the new address and your password.", `value="new-me@example.test"`)
	b.post("/portal/profile/email", url.Values{"new_email": {"new-me@example.test"}, "password": {"not it"}}).
		expect(t, http.StatusUnauthorized, "The password is wrong.", `value="new-me@example.test"`)
	b.postPastThrottle("/portal/profile/email", url.Values{"new_email": {"new-me@example.test"}, "password": {newPW}}).
		redirect(t, "/portal/profile?done=email-sent")
	e.mailedToken("new-me@example.test", "Confirm your new email address", "/verify-email")

	// Export: the API's JSON as a download; its failure as a page.
	exp := b.get("/portal/profile/export")
	exp.expect(t, http.StatusOK, "me@example.test")
	if exp.header.Get("Content-Type") != "application/json" || !strings.Contains(exp.header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("export headers %v", exp.header)
	}
	e.tap.override(t, "GET /api/v1/account/export", answer(http.StatusServiceUnavailable, "application/json",
		`{"error":"temporarily_unavailable","error_description":"the export is busy"}`))
	b.get("/portal/profile/export").expect(t, http.StatusServiceUnavailable, "the export is busy")

	// Delete: the box and the password, then the API's word.
	b.post("/portal/profile/delete", url.Values{"password": {newPW}}).
		expect(t, http.StatusBadRequest, "To delete your account, tick the box and enter your password.")
	e.tap.override(t, "DELETE /api/v1/account", answer(http.StatusConflict, "application/json",
		`{"error":"conflict","error_description":"you are the last owner of Acme."}`))
	b.post("/portal/profile/delete", url.Values{"password": {newPW}, "confirm": {"yes"}}).
		expect(t, http.StatusConflict, `role="alert">You are the last owner of Acme.</p>`)
	e.tap.override(t, "DELETE /api/v1/account", nil)
	// An erased account keeps its row (with its personal fields emptied).
	erased := func() bool {
		u, err := e.st.GetUser(context.Background(), uid)
		return err != nil || u.Email != "me@example.test"
	}
	if erased() {
		t.Fatal("a refused deletion erased the account")
	}
	b.post("/portal/profile/delete", url.Values{"password": {newPW}, "confirm": {"yes"}}).redirect(t, "/portal/?done=deleted")
	if !erased() {
		t.Fatal("the account is still there")
	}
	b.get("/portal/profile").redirect(t, "/portal/signin?next=%2Fportal%2Fprofile")
}

var sessionIDs = regexp.MustCompile(`name="id" value="([^"]+)"`)

// TestSessionsPage: the person's sessions, ending another one and their
// own, and the page's refusals.
func TestSessionsPage(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	uid := e.person("sessions@example.test")
	b := e.browser(uid)
	other, err := e.sessions.CreateBrowserSession(context.Background(), uid, "192.0.2.7", "Other Browser/1.0")
	if err != nil {
		t.Fatal(err)
	}
	p := b.get("/portal/sessions")
	p.expect(t, http.StatusOK, "Other Browser/1.0", `<span class="badge">this one</span>`)
	var current string
	for _, m := range sessionIDs.FindAllStringSubmatch(p.body, -1) {
		if m[1] != other.ID {
			current = m[1]
		}
	}
	if current == "" {
		t.Fatalf("the page lists no session of this browser: %s", p.body)
	}

	b.post("/portal/sessions/end", url.Values{"id": {" "}}).expect(t, http.StatusBadRequest, "Choose a session to end.", "Other Browser/1.0")
	b.post("/portal/sessions/end", url.Values{"id": {"00000000-0000-4000-8000-000000000000"}}).
		expect(t, http.StatusNotFound, "You have no session with that id.")
	b.post("/portal/sessions/end", url.Values{"id": {other.ID}}).redirect(t, "/portal/sessions?done=session-ended")
	if got := e.tap.last(t, "DELETE /api/v1/account/sessions/"+other.ID); got.Body != "" {
		t.Fatalf("ending a session sent a body: %q", got.Body)
	}
	b.get("/portal/sessions?done=session-ended").expect(t, http.StatusOK, "The session is ended.").lacks(t, "Other Browser/1.0")

	e.tap.override(t, "GET /api/v1/account/sessions", answer(http.StatusInternalServerError, "text/plain", ""))
	b.get("/portal/sessions").expect(t, http.StatusInternalServerError, "Internal Server Error")
	e.tap.override(t, "GET /api/v1/account/sessions", nil)

	// Ending this browser's own session signs it out.
	b.post("/portal/sessions/end", url.Values{"id": {current}}).redirect(t, "/portal/signin?done=signed-out")
	b.get("/portal/sessions").redirect(t, "/portal/signin?next=%2Fportal%2Fsessions")
}
