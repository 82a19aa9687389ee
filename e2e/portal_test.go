package e2e

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/internal/mailtest"
)

// TestPortal walks the developer portal in a real browser through the
// gateway, as a new person does: sign up, read the verification mail from
// the stack's SMTP server, verify, sign in, create an organization, a
// client and an API key, run an inference in the explorer, find it counted
// in usage; then an admin of the organization revokes the key and the
// explorer's next call is refused. Each page is photographed (test
// artifacts) and checked by axe-core; hostile form input is refused with a
// clear message and changes nothing.
func TestPortal(t *testing.T) {
	s := startStack(t, stackOptions{selfRegister: true})
	base := "https://" + s.gateway
	b := newBrowser(t, base)
	if b == nil {
		return
	}
	mail := mailtest.NewClient(s.st.MailpitURL)
	email := fmt.Sprintf("portal-%d@example.com", time.Now().UnixNano())
	const pw = "a portal passphrase long enough"

	b.open("/")
	if loc := b.location(); !strings.HasPrefix(loc, "/portal/") {
		t.Fatalf("/ went to %q, want the portal", loc)
	}
	b.waitText("main", "free", 10*time.Second) // the plans, from the gateway config
	b.shot("home")

	b.open("/portal/signup")
	b.shot("signup")
	t.Run("hostile sign-up input is refused and changes nothing", func(t *testing.T) {
		// As an attacker sends it: without the browser's own checks.
		for _, c := range []struct{ name, email, displayName, want string }{
			{"script in the address", `<script>alert(1)</script>@example.com`, "x", "email"},
			{"SQL in the address", `x'; DROP TABLE users;--@example.com`, "x", "email"},
			{"oversized name", "big-" + email, strings.Repeat("n", 5000), "display"},
			{"missing address", "", "x", "email"},
		} {
			b.open("/portal/signup")
			b.noValidate("main form")
			b.submit(map[string]string{"#email": c.email, "#display_name": c.displayName, "#password": pw, "#password_confirm": pw},
				"main form button[type=submit]")
			msg := b.text(".message.error")
			if !strings.Contains(strings.ToLower(msg), c.want) {
				t.Errorf("%s: message %q does not name the %s", c.name, msg, c.want)
			}
			if n := b.count("script:not([src])"); n != 0 {
				t.Errorf("%s: the answer has %d inline scripts", c.name, n)
			}
		}
		b.shot("signup-refused")
		var users int
		if err := s.db(t).QueryRow(context.Background(), `SELECT count(*) FROM users WHERE email LIKE '%script%' OR email LIKE '%DROP%' OR email = $1`, "big-"+email).Scan(&users); err != nil {
			t.Fatal(err)
		}
		if users != 0 {
			t.Errorf("refused sign-ups created %d users", users)
		}
	})
	b.open("/portal/signup")
	b.submit(map[string]string{"#email": email, "#password": pw, "#password_confirm": pw, "#display_name": "Portal Tester"},
		"main form button[type=submit]")
	b.waitText("main", "mail", 5*time.Second)
	b.shot("signup-sent")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := mail.WaitFor(ctx, email, "Confirm your email address")
	if err != nil {
		t.Fatalf("verification mail: %v", err)
	}
	link := mailtest.Link(m, "/verify-email")
	u, err := url.Parse(link)
	if err != nil || link == "" {
		t.Fatalf("no verification link in %q", m.Text)
	}
	if "https://"+u.Host != base {
		t.Errorf("the mailed link points at %s, want the gateway's origin %s", u.Host, base)
	}
	b.open(u.RequestURI())
	b.shot("verify")
	b.submit(nil, "main form button[type=submit]")
	b.waitText("main", "confirmed", 5*time.Second)

	b.open("/portal/signin")
	b.shot("signin")
	b.submit(map[string]string{"#email": email, "#password": pw}, "main form button[type=submit]")

	b.open("/portal/credentials")
	b.submit(map[string]string{"#org_name": "Portal Test Org"}, "main form button[type=submit]")
	b.waitText("main", "Portal Test Org", 5*time.Second)
	b.check(`input[name="scopes"][value="models:infer"]`)
	b.submit(map[string]string{"#client_name": "explorer app", "#client_models": "*"}, `form[action*="credentials/clients"] button[type=submit]`)
	b.waitText("main", "explorer app", 5*time.Second)
	b.submit(map[string]string{"#key_name": "browser key"}, `form[action*="credentials/keys"] button[type=submit]`)
	key := b.text("#secret-value")
	if !regexp.MustCompile(`^hx_\S+$`).MatchString(key) {
		t.Fatalf("the new API key shown is %q", key)
	}
	b.shot("credentials")

	b.open("/portal/models")
	b.waitText("main", sampleModel, 15*time.Second)
	b.shot("models")
	b.open("/portal/models/" + sampleModel)
	b.shot("model")

	runExplorer := func() string {
		b.open("/portal/explorer?model=" + sampleModel)
		b.fill("#api-key", key)
		b.do("run", chromedp.Click(chromedp.CSS("#run")))
		return b.waitText("#response-status", " ms", 15*time.Second)
	}
	if st := runExplorer(); !strings.HasPrefix(st, "200") {
		t.Fatalf("explorer: %q, response %q", st, b.text("#response"))
	}
	if out := b.text("#response"); !strings.Contains(out, `"outputs"`) {
		t.Errorf("explorer response %q has no outputs", out)
	}
	b.shot("explorer")

	// The worker flushes its counts every second; helix-authz writes them.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.open("/portal/usage")
		if strings.Contains(b.text("main"), sampleModel) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the explorer's inference is not in usage after 30 s: %q", b.text("main"))
		}
		time.Sleep(time.Second)
	}
	b.shot("usage")

	b.open("/portal/profile")
	b.shot("profile")
	b.open("/portal/sessions")
	b.shot("sessions")

	// An admin of the organization (its owner) revokes the key: the
	// explorer's next call is refused.
	b.open("/portal/credentials")
	b.submit(nil, `form[action*="credentials/keys/revoke"] button[type=submit]`)
	b.waitText("main", "revoked", 5*time.Second)
	waitFor(t, "the revoked key refused", 10*time.Second, nil, func(context.Context) error {
		if st := runExplorer(); !strings.HasPrefix(st, "401") {
			return fmt.Errorf("explorer after revocation: %q", st)
		}
		return nil
	})
	b.shot("explorer-refused")
}

// db is a pool on the stack's Postgres, closed when the test ends.
func (s *stack) db(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), s.st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
