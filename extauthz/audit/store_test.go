package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/helixflow/helixflow/internal/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// clock is a settable clock for rows' at.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	s     *Store
	pool  *pgxpool.Pool // the superuser's: tests bypass the trigger with it
	clock *clock
}

// newEnv opens a Store on a fresh, migrated database of the shared server.
func newEnv(t *testing.T) *env {
	t.Helper()
	pool := pgtest.Pool(t, pgtest.Migrated(t))
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.UTC)}
	s, err := New(Config{Pool: pool, Logger: quiet, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return &env{s: s, pool: pool, clock: c}
}

func event(i int) Event {
	return Event{
		Actor: fmt.Sprintf("user:%d", i%3), Action: "account.login", Target: fmt.Sprintf("session:%d", i),
		Result: ResultSuccess, Operator: "", Source: fmt.Sprintf("192.0.2.%d", i), UserAgent: "test/1.0",
		Detail: map[string]string{"n": fmt.Sprint(i), "via": "cookie"},
	}
}

// fill appends n events, one minute apart.
func (e *env) fill(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if err := e.s.Record(testCtx(t), event(i)); err != nil {
			t.Fatal(err)
		}
		e.clock.add(time.Minute)
	}
}

func (e *env) verify(t *testing.T) *Verification {
	t.Helper()
	v, err := e.s.Verify(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// bypass runs sql as a superuser who switched triggers off
// (session_replication_role = replica): what the chain must catch.
func (e *env) bypass(t *testing.T, sql string, args ...any) {
	t.Helper()
	err := pgx.BeginFunc(testCtx(t), e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(testCtx(t), `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(testCtx(t), sql, args...)
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestChainVerifies(t *testing.T) {
	e := newEnv(t)
	if v := e.verify(t); !v.OK || v.Rows != 0 || v.HeadSeq != 0 {
		t.Fatalf("empty trail: %+v", v)
	}
	e.fill(t, 10)
	v := e.verify(t)
	if !v.OK || v.Rows != 10 || v.HeadSeq != 10 || v.AnchorSeq != 0 || len(v.HeadHash) != 32 {
		t.Fatalf("verify: %+v", v)
	}
	rows, err := e.s.List(testCtx(t), Filter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Seq != 10 || !bytes.Equal(rows[0].Hash, v.HeadHash) {
		t.Fatalf("newest row: %+v", rows)
	}
	r := rows[0]
	if r.Actor != "user:0" || r.Target != "session:9" || r.Source != "192.0.2.9" || r.UserAgent != "test/1.0" ||
		r.Detail["n"] != "9" || r.Pseudonymised || !r.At.Equal(time.Date(2026, 1, 1, 0, 9, 0, 123456000, time.UTC)) {
		t.Fatalf("row read back: %+v", r)
	}
}

// forge returns a row that links to prev and hashes right: what a careful
// forger with database access inserts.
func forge(seq int64, at time.Time, prev []byte) *Row {
	r := &Row{Seq: seq, At: at, Actor: "user:evil", Action: "account.login", Result: ResultSuccess,
		Detail: map[string]string{}, PrevHash: prev, salt: make([]byte, saltSize)}
	r.PersonalDigest = personalDigest(r.salt, "", "", "")
	r.Hash = rowHash(r)
	return r
}

func (e *env) insert(t *testing.T, r *Row) {
	t.Helper()
	e.bypass(t, `INSERT INTO audit_log (seq, at, actor, action, target, result, detail, operator, source, user_agent,
		personal_salt, personal_digest, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, '', '', '', $8, $9, $10, $11)`,
		r.Seq, r.At, r.Actor, r.Action, r.Target, r.Result, r.Detail, r.salt, []byte(r.PersonalDigest), []byte(r.PrevHash), []byte(r.Hash))
}

func (e *env) hashOf(t *testing.T, seq int64) []byte {
	t.Helper()
	var h []byte
	if err := e.pool.QueryRow(testCtx(t), `SELECT hash FROM audit_log WHERE seq = $1`, seq).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestTamperingDetected: whatever a superuser who bypasses the trigger
// changes, Verify names the first row that is not what was appended.
func TestTamperingDetected(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 4, 30, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, e *env)
		bad     int64
		because string
	}{
		{"edited action", func(t *testing.T, e *env) {
			e.bypass(t, `UPDATE audit_log SET action = 'account.logout' WHERE seq = 4`)
		}, 4, "edited"},
		{"edited detail", func(t *testing.T, e *env) {
			e.bypass(t, `UPDATE audit_log SET detail = '{"n":"5","via":"bearer"}' WHERE seq = 5`)
		}, 5, "edited"},
		{"edited time", func(t *testing.T, e *env) {
			e.bypass(t, `UPDATE audit_log SET at = at + interval '1 microsecond' WHERE seq = 2`)
		}, 2, "edited"},
		{"edited source", func(t *testing.T, e *env) {
			e.bypass(t, `UPDATE audit_log SET source = '203.0.113.1' WHERE seq = 6`)
		}, 6, "source"},
		{"salt dropped to hide an edit", func(t *testing.T, e *env) {
			e.bypass(t, `UPDATE audit_log SET personal_salt = NULL, source = '203.0.113.1' WHERE seq = 6`)
		}, 6, "without their salt"},
		{"edited and rehashed", func(t *testing.T, e *env) {
			r := forge(4, at, e.hashOf(t, 3))
			e.bypass(t, `DELETE FROM audit_log WHERE seq = 4`)
			e.insert(t, r)
		}, 5, "prev_hash"},
		{"deleted in the middle", func(t *testing.T, e *env) {
			e.bypass(t, `DELETE FROM audit_log WHERE seq = 3`)
		}, 3, "missing"},
		{"deleted first", func(t *testing.T, e *env) {
			e.bypass(t, `DELETE FROM audit_log WHERE seq = 1`)
		}, 1, "missing"},
		{"deleted at the end", func(t *testing.T, e *env) {
			e.bypass(t, `DELETE FROM audit_log WHERE seq >= 9`)
		}, 9, "deleted at the end"},
		{"deleted and renumbered", func(t *testing.T, e *env) {
			e.bypass(t, `DELETE FROM audit_log WHERE seq = 3`)
			e.bypass(t, `UPDATE audit_log SET seq = seq - 1 WHERE seq > 3`)
		}, 3, ""},
		{"reordered", func(t *testing.T, e *env) {
			e.bypass(t, `UPDATE audit_log SET seq = 1000 + seq WHERE seq IN (3, 4)`)
			e.bypass(t, `UPDATE audit_log SET seq = 1007 - seq WHERE seq IN (1003, 1004)`) // 3 -> 4, 4 -> 3
		}, 3, ""},
		{"inserted in the middle, forged well", func(t *testing.T, e *env) {
			e.bypass(t, `UPDATE audit_log SET seq = 1000 + seq WHERE seq >= 5`)
			e.bypass(t, `UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000`) // 5 -> 6 ...
			e.insert(t, forge(5, at, e.hashOf(t, 4)))
		}, 6, ""},
		{"inserted in the middle, badly", func(t *testing.T, e *env) {
			e.bypass(t, `UPDATE audit_log SET seq = 1000 + seq WHERE seq >= 5`)
			e.bypass(t, `UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000`)
			e.insert(t, forge(5, at, make([]byte, 32)))
		}, 5, "prev_hash"},
		{"appended outside the chain", func(t *testing.T, e *env) {
			e.insert(t, forge(11, at, e.hashOf(t, 10)))
		}, 11, "outside the chain"},
		{"head moved back", func(t *testing.T, e *env) {
			e.bypass(t, `UPDATE audit_chain SET head_seq = 9, head_hash = (SELECT hash FROM audit_log WHERE seq = 9)`)
		}, 10, "outside the chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.fill(t, 10)
			if v := e.verify(t); !v.OK {
				t.Fatalf("before tampering: %+v", v)
			}
			tc.tamper(t, e)
			v := e.verify(t)
			if v.OK || v.FirstBadSeq != tc.bad || !strings.Contains(v.Reason, tc.because) {
				t.Fatalf("after tampering: %+v; want first bad row %d (%q)", v, tc.bad, tc.because)
			}
		})
	}
}

const privilegeError = "42501" // insufficient_privilege, raised by the guards

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestAppendOnly: the trigger refuses plain changes, even a superuser's,
// and lets maintenance only erase personal fields.
func TestAppendOnly(t *testing.T) {
	e := newEnv(t)
	e.fill(t, 3)
	exec := func(maint bool, sql string) error {
		return pgx.BeginFunc(testCtx(t), e.pool, func(tx pgx.Tx) error {
			if maint {
				if err := maintenance(testCtx(t), tx, true); err != nil {
					return err
				}
			}
			_, err := tx.Exec(testCtx(t), sql)
			return err
		})
	}
	for _, tc := range []struct {
		maint bool
		sql   string
		ok    bool
	}{
		{false, `UPDATE audit_log SET action = 'x' WHERE seq = 1`, false},
		{false, `UPDATE audit_log SET source = NULL, operator = NULL, user_agent = NULL, personal_salt = NULL WHERE seq = 1`, false},
		{false, `DELETE FROM audit_log WHERE seq = 3`, false},
		{false, `TRUNCATE audit_log`, false},
		{true, `TRUNCATE audit_log`, false},
		{true, `UPDATE audit_log SET action = 'x' WHERE seq = 1`, false},
		{true, `UPDATE audit_log SET source = '203.0.113.9' WHERE seq = 1`, false},
		{true, `UPDATE audit_log SET source = NULL WHERE seq = 1`, false}, // the salt must go with the fields
		{false, `DELETE FROM audit_chain`, false},
		{false, `UPDATE audit_chain SET head_seq = 2`, false},
		{false, `UPDATE audit_chain SET anchor_seq = 1`, false},
		{true, `UPDATE audit_chain SET anchor_seq = 0, head_seq = 1`, false},
		{true, `UPDATE audit_log SET source = NULL, operator = NULL, user_agent = NULL, personal_salt = NULL WHERE seq = 2`, true},
	} {
		err := exec(tc.maint, tc.sql)
		switch {
		case tc.ok && err != nil:
			t.Errorf("maintenance=%v %s: %v", tc.maint, tc.sql, err)
		case !tc.ok && pgCode(err) != privilegeError:
			t.Errorf("maintenance=%v %s: got %v, want refused (%s)", tc.maint, tc.sql, err, privilegeError)
		}
	}
	// The setting lasts one transaction: the next one is refused again.
	if err := exec(false, `DELETE FROM audit_log WHERE seq = 1`); pgCode(err) != privilegeError {
		t.Fatalf("delete after a maintenance transaction: %v", err)
	}
	if v := e.verify(t); !v.OK || v.Rows != 3 {
		t.Fatalf("after refused changes and one erasure: %+v", v)
	}
}

func TestPruneKeepsVerification(t *testing.T) {
	e := newEnv(t)
	e.fill(t, 10) // at = 00:00 .. 00:09
	cut := time.Date(2026, 1, 1, 0, 4, 0, 0, time.UTC)
	// In batches of two, as a long trail goes in batches of pruneBatch.
	var n int64
	for {
		got, err := e.s.pruneBatch(testCtx(t), cut, 2)
		if err != nil {
			t.Fatal(err)
		}
		if n += got; got == 0 {
			break
		}
	}
	if n != 4 {
		t.Fatalf("pruned %d rows before 00:04, want 4", n)
	}
	v := e.verify(t)
	if !v.OK || v.AnchorSeq != 4 || v.Rows != 6 || v.HeadSeq != 10 {
		t.Fatalf("after pruning: %+v", v)
	}
	e.fill(t, 2)
	if v := e.verify(t); !v.OK || v.Rows != 8 || v.HeadSeq != 12 {
		t.Fatalf("after appending to a pruned trail: %+v", v)
	}
	// A row deleted right after the anchor is still caught.
	e.bypass(t, `DELETE FROM audit_log WHERE seq = 5`)
	if v := e.verify(t); v.OK || v.FirstBadSeq != 5 {
		t.Fatalf("deleted after the anchor: %+v", v)
	}
	// Pruning refuses to delete rows that do not verify: the evidence stays.
	if _, err := e.s.Prune(testCtx(t), e.clock.now().Add(time.Hour)); !errors.Is(err, ErrChainBroken) {
		t.Fatalf("prune over a broken chain: %v", err)
	}
	if v := e.verify(t); v.AnchorSeq != 4 {
		t.Fatalf("anchor moved over a broken chain: %+v", v)
	}
}

func TestPruneEverything(t *testing.T) {
	e := newEnv(t)
	e.fill(t, 5)
	n, err := e.s.Prune(testCtx(t), e.clock.now().Add(time.Hour))
	if err != nil || n != 5 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if v := e.verify(t); !v.OK || v.Rows != 0 || v.AnchorSeq != 5 || v.HeadSeq != 5 {
		t.Fatalf("after pruning every row: %+v", v)
	}
	e.fill(t, 1)
	if v := e.verify(t); !v.OK || v.Rows != 1 || v.HeadSeq != 6 {
		t.Fatalf("after appending again: %+v", v)
	}
}

func TestPseudonymise(t *testing.T) {
	e := newEnv(t)
	e.fill(t, 9) // actors user:0, user:1, user:2 in turn; targets session:<i>
	var n int64
	err := pgx.BeginFunc(testCtx(t), e.pool, func(tx pgx.Tx) error {
		var err error
		n, err = Pseudonymise(testCtx(t), tx, "user:1", "session:3")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 { // actor user:1 at 1, 4, 7; target session:3
		t.Fatalf("pseudonymised %d rows, want 4", n)
	}
	rows, err := e.s.List(testCtx(t), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		erased := r.Actor == "user:1" || r.Target == "session:3"
		if r.Pseudonymised != erased || (erased && (r.Source != "" || r.UserAgent != "")) || (!erased && r.Source == "") {
			t.Errorf("row %d (%s, %s): pseudonymised=%v source=%q", r.Seq, r.Actor, r.Target, r.Pseudonymised, r.Source)
		}
	}
	if v := e.verify(t); !v.OK || v.Rows != 9 {
		t.Fatalf("after pseudonymising: %+v", v)
	}
	// And appends after it are still refused an UPDATE: the setting ended.
	if _, err := e.pool.Exec(testCtx(t), `UPDATE audit_log SET source = NULL WHERE seq = 1`); pgCode(err) != privilegeError {
		t.Fatalf("update after erasure: %v", err)
	}
}

// TestConcurrentAppends: appends from many connections make one chain.
func TestConcurrentAppends(t *testing.T) {
	e := newEnv(t)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := e.s.Record(testCtx(t), event(w*each+i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if v := e.verify(t); !v.OK || v.Rows != writers*each || v.HeadSeq != writers*each {
		t.Fatalf("after concurrent appends: %+v", v)
	}
}

// TestRecordKeepsHostileInput: what a caller sends (NUL, broken UTF-8, a
// huge user agent) is recorded, cut to fit, never lost.
func TestRecordKeepsHostileInput(t *testing.T) {
	e := newEnv(t)
	ev := Event{
		Actor: "user:1'; DROP TABLE audit_log; --", Action: "account.login", Result: ResultFailure,
		Source: "192.0.2.1\x00", UserAgent: strings.Repeat("é", 1000) + "\xff",
		Detail: map[string]string{"k\x00": "v\xfe", "quote": `"}{`},
	}
	if err := e.s.Record(testCtx(t), ev); err != nil {
		t.Fatal(err)
	}
	rows, err := e.s.List(testCtx(t), Filter{Actor: ev.Actor})
	if err != nil || len(rows) != 1 {
		t.Fatalf("list: %v, %v", rows, err)
	}
	r := rows[0]
	if len(r.UserAgent) > maxUserAgent || !strings.HasPrefix(r.UserAgent, "éé") || r.Source != "192.0.2.1\uFFFD" ||
		r.Detail["k\uFFFD"] != "v\uFFFD" || r.Detail["quote"] != `"}{` {
		t.Fatalf("stored: %+v", r)
	}
	if v := e.verify(t); !v.OK {
		t.Fatalf("verify: %+v", v)
	}
}

func TestRecordFailureCounted(t *testing.T) {
	e := newEnv(t)
	for _, ev := range []Event{
		{Actor: "system", Action: "x", Result: "maybe"},
		{Action: "x", Result: ResultSuccess},
		{Actor: "system", Result: ResultSuccess},
	} {
		if err := e.s.Record(testCtx(t), ev); err == nil {
			t.Errorf("%+v recorded", ev)
		}
	}
	if got := testutil.ToFloat64(e.s.failures); got != 3 {
		t.Fatalf("helix_authz_audit_write_failures_total = %v, want 3", got)
	}
	// The database gone: counted too.
	e.pool.Close()
	if err := e.s.Record(testCtx(t), event(1)); err == nil {
		t.Fatal("recorded on a closed pool")
	}
	if got := testutil.ToFloat64(e.s.failures); got != 4 {
		t.Fatalf("helix_authz_audit_write_failures_total = %v, want 4", got)
	}
}

// TestRecordOutlivesCaller: a caller that went away still leaves its row.
func TestRecordOutlivesCaller(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.s.Record(ctx, event(1)); err != nil {
		t.Fatal(err)
	}
	if v := e.verify(t); v.Rows != 1 {
		t.Fatalf("%+v", v)
	}
}

func TestListAndExport(t *testing.T) {
	e := newEnv(t)
	e.fill(t, 9) // at 00:00 .. 00:08
	ids := func(rows []Row) (out []int64) {
		for _, r := range rows {
			out = append(out, r.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "[9 8 7 6 5 4 3 2 1]"},
		{Filter{Actor: "user:1"}, "[8 5 2]"},
		{Filter{Target: "session:4"}, "[5]"},
		{Filter{Subjects: []string{"session:4"}}, "[5]"},
		{Filter{Subjects: []string{"user:2", "session:0"}}, "[9 6 3 1]"},
		{Filter{Action: "account.logout"}, "[]"},
		{Filter{Since: time.Date(2026, 1, 1, 0, 3, 0, 0, time.UTC), Until: time.Date(2026, 1, 1, 0, 6, 0, 0, time.UTC)}, "[6 5 4]"},
		{Filter{Limit: 2}, "[9 8]"},
		{Filter{Limit: 2, Before: 8}, "[7 6]"},
	} {
		rows, err := e.s.List(testCtx(t), tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(ids(rows)); got != tc.want && !(tc.want == "[]" && got == "[]") {
			t.Errorf("List(%+v) = %s, want %s", tc.f, got, tc.want)
		}
	}
	for _, f := range []Filter{{Limit: -1}, {Limit: MaxListLimit + 1}, {Before: -1}, {Actor: "a\x00"}, {Subjects: []string{strings.Repeat("x", maxRef+1)}}, {Subjects: []string{""}}} {
		if _, err := e.s.List(testCtx(t), f); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("List(%+v): %v, want ErrInvalidFilter", f, err)
		}
	}
	about, err := e.s.About(testCtx(t), "user:2", "session:0")
	if err != nil || fmt.Sprint(ids(about)) != "[1 3 6 9]" {
		t.Fatalf("About: %v, %v", ids(about), err)
	}
	var buf bytes.Buffer
	n, err := e.s.Export(testCtx(t), &buf, Filter{Actor: "user:1"})
	if err != nil || n != 3 {
		t.Fatalf("export: %d, %v", n, err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("export: %q", buf.String())
	}
	// Oldest first, every field, and the hashes to check it by.
	var r Row
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	r.salt = nil
	want := fmt.Sprintf(`"seq":2,"at":"2026-01-01T00:01:00.123456Z","actor":"user:1","action":"account.login","target":"session:1","result":"success","detail":{"n":"1","via":"cookie"},"source":"192.0.2.1","user_agent":"test/1.0","personal_digest":"%x"`, []byte(r.PersonalDigest))
	if !strings.Contains(lines[0], want) || len(r.Hash) != 32 || len(r.PrevHash) != 32 {
		t.Fatalf("export line %s\nwant it to hold %s", lines[0], want)
	}
}
