package gdpr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

func testCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// People of the fixture.
const (
	alice = "00000000-0000-4000-8000-00000000000a" // erased
	bob   = "00000000-0000-4000-8000-00000000000b" // a member of alice's second org
	carol = "00000000-0000-4000-8000-00000000000c" // an admin of alice's first org
	org1  = "00000000-0000-4000-8000-0000000000f1" // alice owns, carol admin: carol becomes owner
	org2  = "00000000-0000-4000-8000-0000000000f2" // alice owns, bob member: left without owner
	org3  = "00000000-0000-4000-8000-0000000000f3" // carol owns, alice member
	sessA = "00000000-0000-4000-8000-0000000000a1"
	sessT = "00000000-0000-4000-8000-0000000000a2" // alice's token session (helixctl)
	sessB = "00000000-0000-4000-8000-0000000000b1"
)

type env struct {
	svc   *Service
	trail *audit.Store
	pool  *pgxpool.Pool
}

// newEnv migrates a fresh database and fills it with alice's data in every
// table that holds some, and some of other people's.
func newEnv(t *testing.T) *env {
	t.Helper()
	pool := pgtest.Pool(t, pgtest.Migrated(t))
	trail, err := audit.New(audit.Config{Pool: pool, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Pool: pool, Audit: trail})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO users (id, email, email_verified_at, password_hash, display_name, organization, preferences, platform_admin) VALUES
			('` + alice + `', 'alice@example.com', now(), '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', 'Alice A', 'Acme', '{"theme":"dark"}', true),
			('` + bob + `', 'bob@example.com', now(), NULL, 'Bob', '', '{}', false),
			('` + carol + `', 'carol@example.com', now(), NULL, 'Carol', '', '{}', false)`,
		`INSERT INTO sessions (id, secret_hash, user_id, kind, client_id, source, user_agent, expires_at) VALUES
			('` + sessA + `', sha256('a'), '` + alice + `', 'browser', NULL, '192.0.2.10', 'Firefox/140', now() + interval '1 hour'),
			('` + sessT + `', sha256('t'), '` + alice + `', 'token', 'helixctl', '192.0.2.11', 'helixctl/1.0', now() + interval '30 days'),
			('` + sessB + `', sha256('b'), '` + bob + `', 'browser', NULL, '198.51.100.7', 'Chrome/140', now() + interval '1 hour')`,
		`INSERT INTO account_tokens (token_hash, user_id, purpose, new_email, expires_at) VALUES
			(sha256('x'), '` + alice + `', 'change_email', 'alice@new.example', now() + interval '1 day')`,
		`INSERT INTO organizations (id, name) VALUES ('` + org1 + `', 'One'), ('` + org2 + `', 'Two'), ('` + org3 + `', 'Three')`,
		`INSERT INTO memberships (org_id, user_id, role) VALUES
			('` + org1 + `', '` + alice + `', 'owner'), ('` + org1 + `', '` + carol + `', 'admin'),
			('` + org2 + `', '` + alice + `', 'owner'), ('` + org2 + `', '` + bob + `', 'member'),
			('` + org3 + `', '` + carol + `', 'owner'), ('` + org3 + `', '` + alice + `', 'member')`,
		`INSERT INTO clients (id, name, secret_hash, scopes, enabled, org_id, created_by) VALUES
			('app1', 'Alice app', 'h', '{models:infer}', true, '` + org1 + `', '` + alice + `'),
			('app2', 'Bob app', 'h', '{models:infer}', true, '` + org2 + `', '` + bob + `')`,
		`INSERT INTO clients (id, name, public, grant_types, redirect_uris, enabled) VALUES
			('helixctl', 'helixctl', true, '{authorization_code,refresh_token}', '{http://127.0.0.1/callback}', true)`,
		`INSERT INTO api_keys (id, prefix, hash, client_id, name, created_by) VALUES
			('hx_a', 'hx_a', 'h', 'app1', 'alice key', '` + alice + `'),
			('hx_b', 'hx_b', 'h', 'app1', 'bob key', '` + bob + `')`,
		`INSERT INTO oauth_codes (signature, request_id, client_id, user_id, redirect_uri, code_challenge, requested_at, expires_at) VALUES
			(sha256('code'), 'req1', 'helixctl', '` + alice + `', 'http://127.0.0.1:5555/callback', repeat('a', 43), now(), now() + interval '1 minute')`,
		`INSERT INTO oauth_refresh_tokens (signature, family_id, client_id, user_id, session_id, scopes, requested_at, expires_at, used_at) VALUES
			(sha256('r1'), 'fam1', 'helixctl', '` + alice + `', '` + sessT + `', '{account}', now(), now() + interval '7 days', now()),
			(sha256('r2'), 'fam1', 'helixctl', '` + alice + `', '` + sessT + `', '{account}', now(), now() + interval '7 days', NULL)`,
	} {
		if _, err := pool.Exec(testCtx(t), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, ev := range []audit.Event{
		{Actor: UserRef(alice), Action: "account.login", Target: "session:" + sessA, Result: audit.ResultSuccess, Source: "192.0.2.10", UserAgent: "Firefox/140"},
		{Actor: "admin-token", Action: "user.update", Target: UserRef(alice), Result: audit.ResultSuccess, Operator: "ops@host", Source: "127.0.0.1", UserAgent: "helixctl"},
		{Actor: "session:" + sessT, Action: "token.refresh", Target: "client:helixctl", Result: audit.ResultSuccess, Source: "192.0.2.11", UserAgent: "helixctl/1.0"},
		{Actor: UserRef(bob), Action: "account.login", Target: "session:" + sessB, Result: audit.ResultSuccess, Source: "198.51.100.7", UserAgent: "Chrome/140"},
	} {
		if err := trail.Record(testCtx(t), ev); err != nil {
			t.Fatal(err)
		}
	}
	return &env{svc: svc, trail: trail, pool: pool}
}

func (e *env) export(t *testing.T, userID string) map[string]any {
	t.Helper()
	b, err := e.svc.Export(testCtx(t), userID)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExportHoldsEveryField: every exported Field is in the export with
// alice's value, her related rows are all there, and no secret is.
func TestExportHoldsEveryField(t *testing.T) {
	e := newEnv(t)
	b, err := e.svc.Export(testCtx(t), alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"password_hash", "secret_hash", "csrf_hash", "signature", "token_hash", "argon2id", "personal_salt"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the export holds %q", secret)
		}
	}
	out := e.export(t, alice)
	for _, f := range Fields {
		if f.Section == "" {
			continue
		}
		var objs []any
		switch v := out[f.Section].(type) {
		case map[string]any:
			objs = []any{v}
		case []any:
			objs = v
		}
		found := false
		for _, o := range objs {
			obj, _ := o.(map[string]any)
			if v, ok := obj[f.Column]; ok && v != nil && v != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s.%s: no entry of the export's %q holds it: %v", f.Table, f.Column, f.Section, out[f.Section])
		}
	}
	count := func(section string) int { l, _ := out[section].([]any); return len(l) }
	for section, want := range map[string]int{
		"sessions": 2, "account_tokens": 1, "memberships": 3, "clients_created": 1, "api_keys_created": 1,
		"token_grants": 1, "audit": 3,
	} {
		if got := count(section); got != want {
			t.Errorf("export %s: %d entries, want %d: %v", section, got, want, out[section])
		}
	}
	if u := out["user"].(map[string]any); u["email"] != "alice@example.com" || u["id"] != alice || out["format"] != Format {
		t.Errorf("export user: %v", out)
	}
	if _, err := e.svc.Export(testCtx(t), "00000000-0000-4000-8000-000000000999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("export of nobody: %v", err)
	}
	if _, err := e.svc.Export(testCtx(t), "'; DROP TABLE users; --"); !errors.Is(err, ErrNotFound) {
		t.Errorf("export of a malformed id: %v", err)
	}
}

// owner is the condition that selects a person's rows in each table that
// holds a Field ($1: the user id, $2: their audit references). The row
// recording the erasure keeps the fields of the admin who asked for it.
var owner = map[string]string{
	"users":          "id = $1",
	"sessions":       "user_id = $1",
	"account_tokens": "user_id = $1",
	"audit_log":      "(actor = ANY($2) OR target = ANY($2)) AND action <> 'user.erase'",
}

func TestEraseEmptiesEveryField(t *testing.T) {
	e := newEnv(t)
	by := audit.Event{Actor: "admin-token", Operator: "dpo@example", Source: "127.0.0.1", UserAgent: "helixctl/1.0"}
	er, err := e.svc.Erasure(testCtx(t), alice, by)
	if err != nil {
		t.Fatal(err)
	}
	refs := []string{UserRef(alice), "session:" + sessA, "session:" + sessT}
	for _, f := range Fields {
		cond, ok := owner[f.Table]
		if !ok {
			t.Errorf("%s.%s: the test does not know whose rows of %s are whose: add it to owner", f.Table, f.Column, f.Table)
			continue
		}
		var left int
		q := fmt.Sprintf(`SELECT count(*) FROM %s WHERE $1::uuid IS NOT NULL AND $2::text[] IS NOT NULL AND %s`, f.Table, cond)
		switch f.Erase {
		case RowDeleted:
		case Pseudonymised:
			q += " AND " + f.Column + " IS NOT NULL"
		default:
			q += fmt.Sprintf(" AND %s IS DISTINCT FROM %s", f.Column, f.Erase)
		}
		if err := e.pool.QueryRow(testCtx(t), q, alice, refs).Scan(&left); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if left != 0 {
			t.Errorf("%s.%s: %d rows keep it after erasure (%s)", f.Table, f.Column, left, f.Erase)
		}
	}
	want := Erasure{UserID: alice, SessionsEnded: 2, RefreshTokensRevoked: 2, APIKeysRevoked: 1, MembershipsRemoved: 3,
		OwnersPromoted: map[string]string{org1: carol}, OrgsWithoutOwner: []string{org2}, AuditRowsPseudonymised: 3}
	want.AuditSeq = er.AuditSeq
	if fmt.Sprint(*er) != fmt.Sprint(want) {
		t.Errorf("erasure: %+v\nwant      %+v", *er, want)
	}
	for _, c := range []struct{ what, q string }{
		{"live sessions", `SELECT count(*) FROM sessions WHERE user_id = '` + alice + `' AND ended_at IS NULL`},
		{"unrevoked sids", `SELECT 2 - count(*) FROM revoked_tokens WHERE jti IN ('sid:` + sessA + `', 'sid:` + sessT + `')`},
		{"live refresh tokens", `SELECT count(*) FROM oauth_refresh_tokens WHERE user_id = '` + alice + `' AND revoked_at IS NULL`},
		{"codes", `SELECT count(*) FROM oauth_codes WHERE user_id = '` + alice + `'`},
		{"her live keys", `SELECT count(*) FROM api_keys WHERE id = 'hx_a' AND revoked_at IS NULL`},
		{"bob's key revoked", `SELECT count(*) FROM api_keys WHERE id = 'hx_b' AND revoked_at IS NOT NULL`},
		{"memberships", `SELECT count(*) FROM memberships WHERE user_id = '` + alice + `'`},
		{"carol not owner", `SELECT count(*) FROM memberships WHERE org_id = '` + org1 + `' AND user_id = '` + carol + `' AND role <> 'owner'`},
		{"bob promoted", `SELECT count(*) FROM memberships WHERE user_id = '` + bob + `' AND role <> 'member'`},
		{"not erased", `SELECT count(*) FROM users WHERE id = '` + alice + `' AND (erased_at IS NULL OR platform_admin)`},
		{"others erased", `SELECT count(*) FROM users WHERE id <> '` + alice + `' AND (erased_at IS NOT NULL OR email IS NULL)`},
		{"bob's session touched", `SELECT count(*) FROM sessions WHERE id = '` + sessB + `' AND (ended_at IS NOT NULL OR source = '')`},
		{"her client gone", `SELECT 1 - count(*) FROM clients WHERE id = 'app1' AND enabled`},
	} {
		var n int
		if err := e.pool.QueryRow(testCtx(t), c.q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		if n != 0 {
			t.Errorf("after erasure, %s: %d", c.what, n)
		}
	}
	// The trail still verifies; other people's rows keep their fields; the
	// erasure is recorded with who asked, and the orgs' changes with it.
	v, err := e.trail.Verify(testCtx(t))
	if err != nil || !v.OK {
		t.Fatalf("verify after erasure: %+v, %v", v, err)
	}
	rows, err := e.trail.List(testCtx(t), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]audit.Row{}
	for _, r := range rows {
		got[r.Action+" "+r.Target] = r
	}
	if r := got["account.login session:"+sessB]; r.Source != "198.51.100.7" || r.Pseudonymised {
		t.Errorf("bob's row: %+v", r)
	}
	if r := got["user.erase "+UserRef(alice)]; r.Operator != "dpo@example" || r.Actor != "admin-token" || r.Seq != er.AuditSeq ||
		r.Detail["api_keys_revoked"] != "1" {
		t.Errorf("erasure row: %+v", r)
	}
	if r := got["org.member.promote org:"+org1]; r.Detail["user"] != UserRef(carol) {
		t.Errorf("promotion row: %+v", r)
	}
	if _, ok := got["org.owner.lost org:"+org2]; !ok {
		t.Errorf("no org.owner.lost row for %s: %v", org2, rows)
	}
	// What is left to export is what erasure kept: no personal field.
	out := e.export(t, alice)
	if u := out["user"].(map[string]any); u["email"] != nil || u["display_name"] != "" || u["erased_at"] == nil {
		t.Errorf("export after erasure: %v", u)
	}
	// Again: nothing left to do, and said so.
	again, err := e.svc.Erasure(testCtx(t), alice, by)
	if err != nil || !again.AlreadyErased || again.SessionsEnded != 0 || again.APIKeysRevoked != 0 {
		t.Errorf("second erasure: %+v, %v", again, err)
	}
}

// TestSelfErasureKeepsNoTrace: a person erasing themselves leaves no
// address or user agent in the row that records it.
func TestSelfErasureKeepsNoTrace(t *testing.T) {
	e := newEnv(t)
	by := audit.Event{Actor: UserRef(alice), Source: "192.0.2.10", UserAgent: "Firefox/140"}
	if err := e.svc.Erase(testCtx(t), alice, by); err != nil {
		t.Fatal(err)
	}
	rows, err := e.trail.List(testCtx(t), audit.Filter{Action: "user.erase"})
	if err != nil || len(rows) != 1 {
		t.Fatalf("%v, %v", rows, err)
	}
	if r := rows[0]; r.Source != "" || r.UserAgent != "" || r.Actor != UserRef(alice) {
		t.Errorf("self-erasure row: %+v", r)
	}
}

// TestErasureIsOneTransaction: a step failing leaves everything as it was.
func TestErasureIsOneTransaction(t *testing.T) {
	e := newEnv(t)
	for _, q := range []string{
		`CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END; $$`,
		`CREATE TRIGGER fail BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION fail()`,
	} {
		if _, err := e.pool.Exec(testCtx(t), q); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.Erase(testCtx(t), alice, audit.Event{Actor: "system"}); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("erase with a failing step: %v", err)
	}
	var live, keys, members, clean int
	if err := e.pool.QueryRow(testCtx(t), `SELECT
		(SELECT count(*) FROM sessions WHERE user_id = $1 AND ended_at IS NULL),
		(SELECT count(*) FROM api_keys WHERE created_by = $1 AND revoked_at IS NULL),
		(SELECT count(*) FROM memberships WHERE user_id = $1),
		(SELECT count(*) FROM audit_log WHERE personal_salt IS NULL)`, alice).Scan(&live, &keys, &members, &clean); err != nil {
		t.Fatal(err)
	}
	if live != 2 || keys != 1 || members != 3 || clean != 0 {
		t.Fatalf("after a failed erasure: %d live sessions, %d keys, %d memberships, %d pseudonymised rows", live, keys, members, clean)
	}
	if v, _ := e.trail.Verify(testCtx(t)); v == nil || !v.OK || v.Rows != 4 {
		t.Fatalf("trail after a failed erasure: %+v", v)
	}
}

func TestEraseUnknown(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"00000000-0000-4000-8000-000000000999", "not-a-uuid", ""} {
		if err := e.svc.Erase(testCtx(t), id, audit.Event{Actor: "system"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("erase %q: %v", id, err)
		}
	}
}

// TestPrivacyDocListsEveryField: docs/privacy.md names every Field as
// `table.column`, and names no personal column Fields lacks.
func TestPrivacyDocListsEveryField(t *testing.T) {
	doc, err := os.ReadFile("../../docs/privacy.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, f := range Fields {
		listed[f.Table+"."+f.Column] = true
		row := regexp.MustCompile("(?m)^\\| `" + f.Table + "\\." + f.Column + "` \\|.*$").FindString(string(doc))
		if row == "" {
			t.Errorf("docs/privacy.md does not list `%s.%s` in its table", f.Table, f.Column)
			continue
		}
		for _, want := range []string{f.What, f.Kept} {
			if !strings.Contains(row, want) {
				t.Errorf("docs/privacy.md's row of %s.%s does not say %q: %s", f.Table, f.Column, want, row)
			}
		}
	}
	// The doc's table rows: | `table.column` | ...
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+\\.[a-z_]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		if !listed[m[1]] {
			t.Errorf("docs/privacy.md lists `%s`, which gdpr.Fields lacks", m[1])
		}
	}
}

// notPersonal are the text columns of the schema that hold no personal
// data: with Fields they cover every text column, so a column added later
// (a phone number, a name) fails TestEveryTextColumnClassified until it is
// listed in Fields (and so exported, erased and documented) or here.
var notPersonal = map[string]string{
	"account_tokens.purpose":         "what a link is for",
	"api_key_usage_daily.key_id":     "a key id",
	"api_keys.client_id":             "a client id",
	"api_keys.id":                    "a key id",
	"api_keys.name":                  "a credential's name: the organization's, exported with the keys a person created, kept",
	"api_keys.prefix":                "a key's public prefix",
	"api_keys.replaces":              "a key id",
	"api_keys.scopes":                "scopes",
	"audit_log.action":               "an action name",
	"audit_log.actor":                "a reference, never an email or a name",
	"audit_log.detail":               "non-personal facts (audit.Event's contract)",
	"audit_log.result":               "success, failure, denied",
	"audit_log.target":               "a reference",
	"clients.audience":               "audiences",
	"clients.grant_types":            "grant types",
	"clients.id":                     "a client id",
	"clients.models":                 "model names",
	"clients.name":                   "a credential's name: the organization's, exported with the clients a person created, kept",
	"clients.plan":                   "a plan",
	"clients.redirect_uris":          "an app's URIs",
	"clients.scopes":                 "scopes",
	"usage_batches.reporter":         "a process's reporter id (kind/name/boot id)",
	"rollouts.created_by":            "an actor's reference (admin-token or user:<uuid>), never an operator's name",
	"rollouts.from_pool":             "a pool name",
	"rollouts.from_version":          "a model version",
	"rollouts.model":                 "a model name",
	"rollouts.reason":                "the rollout controller's reason (figures and bars)",
	"rollouts.slo":                   "SLO bars",
	"rollouts.state":                 "a state name",
	"rollouts.steps":                 "percentages",
	"rollouts.to_pool":               "a pool name",
	"rollouts.to_version":            "a model version",
	"usage_hourly.client_id":         "a client id (the app, also for a person's token)",
	"usage_hourly.latency_buckets":   "counts",
	"usage_hourly.model":             "a model name",
	"memberships.role":               "a role",
	"oauth_codes.audience":           "audiences",
	"oauth_codes.client_id":          "a client id",
	"oauth_codes.code_challenge":     "a PKCE hash",
	"oauth_codes.redirect_uri":       "an app's URI",
	"oauth_codes.request_id":         "a random id",
	"oauth_codes.scopes":             "scopes",
	"oauth_refresh_tokens.audience":  "audiences",
	"oauth_refresh_tokens.client_id": "a client id",
	"oauth_refresh_tokens.family_id": "a random id",
	"oauth_refresh_tokens.scopes":    "scopes",
	"organizations.allowed_plans":    "policy",
	"organizations.allowed_scopes":   "policy",
	"organizations.name":             "the organization's name, exported with a person's memberships",
	"revoked_tokens.jti":             "a token id",
	"sessions.client_id":             "a client id",
	"sessions.kind":                  "browser or token",
	"signing_keys.alg":               "an algorithm",
	"signing_keys.kid":               "a key id",
	"signing_keys.public_jwk":        "a public key",
}

// TestEveryTextColumnClassified: every column that could hold what a
// person typed is either a Field or known not to be personal.
func TestEveryTextColumnClassified(t *testing.T) {
	e := newEnv(t)
	rows, err := e.pool.Query(testCtx(t), `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'inet', 'ARRAY')
		  AND table_name <> 'goose_db_version' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	fields := map[string]bool{}
	for _, f := range Fields {
		fields[f.Table+"."+f.Column] = true
	}
	for rows.Next() {
		var col string
		if err := rows.Scan(&col); err != nil {
			t.Fatal(err)
		}
		if _, ok := notPersonal[col]; !ok && !fields[col] {
			t.Errorf("%s: neither a personal field (gdpr.Fields) nor listed as not personal", col)
		}
	}
}
