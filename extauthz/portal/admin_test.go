package portal

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/store"
)

func TestAdminPages(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	root, _ := e.user("root@example.test", true, "Platform")
	plain, _ := e.user("plain@example.test", false, "Acme")
	ctx := context.Background()
	if err := e.st.CreateClient(ctx, &store.Client{ID: "svc-1", Name: "<b>Service</b>", Plan: "free", Enabled: true,
		Scopes: []string{"models:infer"}, Models: []string{"simple"}, SecretHash: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	admin := e.browser(root)

	admin.get("/portal/admin").expect(t, http.StatusOK, `href="/portal/admin/orgs"`, `aria-current="page">Overview`)
	admin.get("/portal/admin/orgs").expect(t, http.StatusOK, "<th scope=\"row\">Acme</th>", "Platform", "models:infer")
	users := admin.get("/portal/admin/users")
	users.expect(t, http.StatusOK, "plain@example.test", "root@example.test", "Grant<span class=\"visually-hidden\"> platform admin to plain@example.test")
	clients := admin.get("/portal/admin/clients")
	clients.expect(t, http.StatusOK, "&lt;b&gt;Service&lt;/b&gt;", `<option value="free" selected>free</option>`, `<option value="pro">pro</option>`)
	clients.lacks(t, "<b>Service</b>")
	for _, p := range []string{"/portal/admin", "/portal/admin/orgs", "/portal/admin/users", "/portal/admin/clients", "/portal/admin/audit"} {
		noInlineCode(t, admin.get(p).body)
	}

	// Grant the flag: the person is then a platform admin, audited as the
	// admin acting through the portal.
	admin.post("/portal/admin/users/"+plain+"/platform-admin", url.Values{"platform_admin": {"true"}}).expect(t, http.StatusSeeOther)
	if u, err := e.st.GetUser(ctx, plain); err != nil || !u.PlatformAdmin {
		t.Fatalf("the flag was not granted: %v %+v", err, u)
	}
	admin.get("/portal/admin/users?done=platform-admin").expect(t, http.StatusOK, "The platform-admin flag was changed.")
	rows, err := e.trail.List(ctx, audit.Filter{Action: "admin.users.set_platform_admin"})
	if err != nil || len(rows) != 1 || rows[0].Actor != "user:"+root || rows[0].Operator != "portal" || rows[0].Target != "user:"+plain {
		t.Fatalf("audit: %v %+v", err, rows)
	}
	audits := admin.get("/portal/admin/audit?action=admin.users.set_platform_admin")
	audits.expect(t, http.StatusOK, "<code>admin.users.set_platform_admin</code>", "<code>user:"+plain+"</code>", "platform_admin=true")
	admin.get("/portal/admin/audit?since=yesterday").expect(t, http.StatusBadRequest, "The filters were not accepted: since:")

	// Refused changes change nothing and say why.
	for _, tc := range []struct {
		name   string
		path   string
		form   url.Values
		origin string
		status int
		msg    string
	}{
		{"no CSRF token", "/portal/admin/users/" + plain + "/platform-admin", url.Values{"platform_admin": {"false"}, "csrf": {""}}, "", http.StatusForbidden, "This form has expired"},
		{"hostile value", "/portal/admin/users/" + plain + "/platform-admin", url.Values{"platform_admin": {"<script>x</script>"}}, "", http.StatusBadRequest, "platform_admin: true or false"},
		{"own flag", "/portal/admin/users/" + root + "/platform-admin", url.Values{"platform_admin": {"false"}}, "", http.StatusBadRequest, "You cannot withdraw your own"},
		{"no such user", "/portal/admin/users/00000000-0000-0000-0000-000000000000/platform-admin", url.Values{"platform_admin": {"false"}}, "", http.StatusNotFound, "People"},
		{"unknown plan", "/portal/admin/clients/svc-1/plan", url.Values{"plan": {"gold'; DROP TABLE clients; --"}}, "", http.StatusBadRequest, "is not a plan of the gateway (plans: free, pro)"},
		{"cross-origin", "/portal/admin/clients/svc-1/plan", url.Values{"plan": {"pro"}}, "https://evil.example", http.StatusForbidden, "not sent from this site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p page
			if tc.origin != "" {
				form := tc.form
				form.Set("csrf", admin.csrf())
				p = admin.do(http.MethodPost, tc.path, strings.NewReader(form.Encode()), tc.origin)
			} else {
				p = admin.post(tc.path, tc.form)
			}
			p.expect(t, tc.status, tc.msg)
			p.lacks(t, "<script>x</script>")
			if u, _ := e.st.GetUser(ctx, plain); !u.PlatformAdmin {
				t.Error("the flag changed")
			}
			if c, _ := e.st.GetClient(ctx, "svc-1"); c.Plan != "free" {
				t.Errorf("the plan changed to %q", c.Plan)
			}
		})
	}

	admin.post("/portal/admin/clients/svc-1/plan", url.Values{"plan": {"pro"}}).expect(t, http.StatusSeeOther)
	if c, _ := e.st.GetClient(ctx, "svc-1"); c.Plan != "pro" {
		t.Fatalf("plan %q, want pro", c.Plan)
	}

	// Someone who is not a platform admin gets neither the pages nor a
	// change through them.
	nobody, _ := e.user("nobody@example.test", false, "")
	e.browser(nobody).get("/portal/admin").expect(t, http.StatusForbidden, "for platform admins")
	e.browser(nobody).post("/portal/admin/clients/svc-1/plan", url.Values{"plan": {"free"}}).expect(t, http.StatusForbidden)
	if c, _ := e.st.GetClient(ctx, "svc-1"); c.Plan != "pro" {
		t.Fatalf("a non-admin changed the plan to %q", c.Plan)
	}
	anon := e.browser("").get("/portal/admin/users")
	if anon.status != http.StatusSeeOther {
		t.Fatalf("anonymous: %d", anon.status)
	}
}

func TestAdminOff(t *testing.T) {
	e := newDataEnv(t, dataOptions{noAdmin: true})
	root, _ := e.user("root@example.test", true, "")
	b := e.browser(root)
	for _, p := range []string{"/portal/admin", "/portal/admin/users", "/portal/admin/audit"} {
		b.get(p).expect(t, http.StatusOK, "The admin API is off on this server")
	}
}

func TestAdminPaging(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	root, _ := e.user("root@example.test", true, "")
	if _, err := e.db.Exec(context.Background(), `INSERT INTO users (email, email_verified_at)
		SELECT 'u' || g || '@example.test', now() FROM generate_series(1, 120) g`); err != nil {
		t.Fatal(err)
	}
	b := e.browser(root)
	first := b.get("/portal/admin/users")
	first.expect(t, http.StatusOK, `/portal/admin/users?after=`)
	next := regexp.MustCompile(`href="(/portal/admin/users\?after=[^"]+)">Next page`).FindStringSubmatch(first.body)
	if next == nil {
		t.Fatal("no next page link")
	}
	second := b.get(html.UnescapeString(next[1]))
	second.expect(t, http.StatusOK)
	second.lacks(t, "Next page")
	if n1, n2 := strings.Count(first.body, "platform-admin\""), strings.Count(second.body, "platform-admin\""); n1 != adminPageSize || n1+n2 != 121 {
		t.Errorf("%d + %d people on the pages, want %d + %d", n1, n2, adminPageSize, 121-adminPageSize)
	}
	b.get("/portal/admin/users?after=nobody").expect(t, http.StatusBadRequest, "after: a user id")
}

func TestNextAuditLink(t *testing.T) {
	d := &adminData{AuditFilter: map[string]string{"actor": "user:x", "action": "a&b"}, NextAudit: 42}
	if got, want := d.NextAuditLink(), "/portal/admin/audit?action=a%26b&actor=user%3Ax&before=42"; got != want {
		t.Errorf("NextAuditLink = %s, want %s", got, want)
	}
}
