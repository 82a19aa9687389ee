package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/internal/peopletest"
	"github.com/helixflow/helixflow/internal/pgtest"
)

type privacyEnv struct {
	client *admin.Client
	trail  *audit.Store
	user   string
}

// newPrivacyEnv serves the audit and GDPR endpoints over the real trail
// and gdpr service on Postgres, recording in that same trail.
func newPrivacyEnv(t *testing.T) *privacyEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := pgtest.Start(t)
	pgtest.Migrate(t, dsn)
	pool := pgtest.Pool(t, dsn)
	tr, svc := peopletest.Privacy(t, pool)
	e := &privacyEnv{trail: tr}
	e.user = peopletest.AddUser(t, pool, peopletest.User{Email: "dana@example.com", DisplayName: "Dana"})
	for _, ev := range []audit.Event{
		{Actor: "user:" + e.user, Action: "account.login", Result: audit.ResultSuccess, Source: "192.0.2.1", UserAgent: "ua"},
		{Actor: "user:" + e.user, Action: "account.login", Result: audit.ResultFailure, Source: "192.0.2.1", UserAgent: "ua"},
		{Actor: "system", Action: "key.rotate", Result: audit.ResultSuccess},
	} {
		if err := tr.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	h, err := admin.Handler(admin.Config{
		Store: newFakeStore(), Hasher: secret.NewHasher(nil), Token: testToken, Plans: admin.NewPlans(testPlans, "free"),
		Audit: tr, Trail: tr, PersonalData: svc, Logger: peopletest.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if e.client, err = admin.NewClient(srv.URL, testToken, srv.Client()); err != nil {
		t.Fatal(err)
	}
	e.client.Operator = "dpo@ops"
	return e
}

func TestAuditEndpoints(t *testing.T) {
	e := newPrivacyEnv(t)
	ctx := context.Background()
	rows, err := e.client.ListAudit(ctx, admin.AuditQuery{Actor: "user:" + e.user})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Seq != 2 || rows[0].Result != audit.ResultFailure || rows[1].Source != "192.0.2.1" {
		t.Fatalf("list by actor: %+v", rows)
	}
	if rows, err = e.client.ListAudit(ctx, admin.AuditQuery{Limit: 1, Before: 3}); err != nil || len(rows) != 1 || rows[0].Seq != 2 {
		t.Fatalf("list page: %+v, %v", rows, err)
	}
	if rows, err = e.client.ListAudit(ctx, admin.AuditQuery{Until: time.Now().Add(-time.Hour)}); err != nil || len(rows) != 0 {
		t.Fatalf("list until an hour ago: %+v, %v", rows, err)
	}
	v, err := e.client.VerifyAudit(ctx)
	if err != nil || !v.OK || v.HeadSeq < 3 {
		t.Fatalf("verify: %+v, %v", v, err)
	}
	var buf bytes.Buffer
	if err := e.client.ExportAudit(ctx, admin.AuditQuery{Action: "account.login"}, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var first audit.Row
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &first) != nil || first.Seq != 1 || len(first.Hash) != 32 {
		t.Fatalf("export: %q", buf.String())
	}
	// Reading the trail is in the trail, with who read it.
	rows, err = e.client.ListAudit(ctx, admin.AuditQuery{Actor: "admin-token"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range rows {
		if r.Operator != "dpo@ops" {
			t.Errorf("row %d without its operator: %+v", r.Seq, r)
		}
		actions = append(actions, r.Action)
	}
	if got := strings.Join(actions, " "); got != "audit.export audit.verify audit.list audit.list audit.list" {
		t.Errorf("recorded: %s", got)
	}
}

func TestAuditEndpointsRefuseBadFilters(t *testing.T) {
	e := newPrivacyEnv(t)
	for _, tc := range []struct{ path, want string }{
		{"/admin/v1/audit?since=yesterday", "since"},
		{"/admin/v1/audit?until=2026-13-01T00:00:00Z", "until"},
		{"/admin/v1/audit?limit=0", "limit"},
		{"/admin/v1/audit?limit=1001", "limit"},
		{"/admin/v1/audit?before=-3", "before"},
		{"/admin/v1/audit?actor=%00", "actor"},
		{"/admin/v1/audit/export?limit=x", "limit"},
		{"/admin/v1/audit/export?target=" + strings.Repeat("x", 400), "target"},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.client.BaseURL+tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set(admin.OperatorHeader, "dpo@ops")
		resp, err := e.client.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.path, resp.StatusCode, body, tc.want)
		}
	}
}

func TestUserExportAndErase(t *testing.T) {
	e := newPrivacyEnv(t)
	ctx := context.Background()
	raw, err := e.client.ExportUser(ctx, e.user)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		User  map[string]any `json:"user"`
		Audit []audit.Row    `json:"audit"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.User["email"] != "dana@example.com" || len(out.Audit) != 2 {
		t.Fatalf("export: %s, %v", raw, err)
	}
	er, err := e.client.EraseUser(ctx, e.user)
	if err != nil || er.UserID != e.user || er.AuditRowsPseudonymised < 2 {
		t.Fatalf("erase: %+v, %v", er, err)
	}
	rows, err := e.client.ListAudit(ctx, admin.AuditQuery{Action: "user.erase"})
	if err != nil || len(rows) != 1 || rows[0].Actor != "admin-token" || rows[0].Operator != "dpo@ops" || rows[0].Target != "user:"+e.user {
		t.Fatalf("erasure row: %+v, %v", rows, err)
	}
	if v, err := e.client.VerifyAudit(ctx); err != nil || !v.OK {
		t.Fatalf("verify after erasure: %+v, %v", v, err)
	}
	for _, id := range []string{"00000000-0000-4000-8000-000000000999", "nope"} {
		var apiErr *admin.APIError
		if _, err := e.client.EraseUser(ctx, id); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
			t.Errorf("erase %s: %v", id, err)
		}
		if _, err := e.client.ExportUser(ctx, id); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
			t.Errorf("export %s: %v", id, err)
		}
	}
	if rows, err := e.client.ListAudit(ctx, admin.AuditQuery{Action: "user.erase", Target: "user:nope"}); err != nil || len(rows) != 1 || rows[0].Result != audit.ResultFailure {
		t.Errorf("failed erasure row: %+v, %v", rows, err)
	}
}

// brokenTrail fails an export after its first line.
type brokenTrail struct{}

func (brokenTrail) List(context.Context, audit.Filter) ([]audit.Row, error) { return nil, nil }
func (brokenTrail) Verify(context.Context) (*audit.Verification, error)     { return nil, nil }
func (brokenTrail) Export(_ context.Context, w io.Writer, _ audit.Filter) (int64, error) {
	_, _ = io.WriteString(w, `{"seq":1}`+"\n")
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return 1, errors.New("connection to the database lost")
}

// TestAuditExportCutShort: an export that fails midway is an error for
// the caller, never a short file that looks whole.
func TestAuditExportCutShort(t *testing.T) {
	h, err := admin.Handler(admin.Config{
		Store: newFakeStore(), Hasher: secret.NewHasher(nil), Token: testToken, Plans: admin.NewPlans(testPlans, "free"),
		Trail: brokenTrail{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := admin.NewClient(srv.URL, testToken, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := c.ExportAudit(context.Background(), admin.AuditQuery{}, &buf); err == nil {
		t.Fatalf("export cut short reported no error (got %q)", buf.String())
	}
}
