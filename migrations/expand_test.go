package migrations_test

// Expand then contract (docs/operations/upgrades.md): during a rolling
// upgrade the previous release's helix-authz runs against the schema the
// new one migrated, so a migration after the last release may only add
// (tables, nullable or defaulted columns, indexes, functions, looser
// constraints). A statement that would break the previous release (a
// drop, a rename, a type change, a new NOT NULL or constraint) belongs in
// a later release's contract migration, which says so in a comment
// "-- contract: <why>" naming the release since which no binary uses what
// it removes. Released migrations are never edited. make upgrade runs the
// previous release's binary against HEAD's schema.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// released reads released.sum: the last release's tag and its migration
// files' SHA-256.
func released(t *testing.T) (tag string, sums map[string]string) {
	t.Helper()
	b, err := os.ReadFile("released.sum")
	if err != nil {
		t.Fatal(err)
	}
	sums = map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case len(f) == 2 && f[0] == "release":
			tag = f[1]
		case len(f) == 2 && len(f[0]) == 64:
			sums[f[1]] = f[0]
		default:
			t.Fatalf("released.sum:%d: %q is neither \"release TAG\" nor \"SHA256  FILE\"", i+1, line)
		}
	}
	if tag == "" || len(sums) == 0 {
		t.Fatal("released.sum names no release or no migration")
	}
	return tag, sums
}

func TestMigrationsExpandThenContract(t *testing.T) {
	tag, sums := released(t)
	problems, notes := checkMigrations(t, ".", tag, sums)
	for _, p := range problems {
		t.Error(p)
	}
	for _, n := range notes {
		t.Log(n)
	}
}

// The check catches an edited released migration, a dropped one, and a
// new migration that contracts without saying so; a marked one passes.
func TestCheckMigrationsCatchesBreaks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	released := "-- +goose Up\nCREATE TABLE t (a int, b text);\n-- +goose Down\nDROP TABLE t;\n"
	sum := sha256.Sum256([]byte(released))
	sums := map[string]string{"00001_t.sql": hex.EncodeToString(sum[:]), "00002_gone.sql": hex.EncodeToString(sum[:])}
	write("00001_t.sql", released+"-- edited\n")
	write("00003_drop.sql", "-- +goose Up\nALTER TABLE t DROP COLUMN b;\n-- +goose Down\nALTER TABLE t ADD COLUMN b text;\n")
	write("00004_add.sql", "-- +goose Up\nALTER TABLE t ADD COLUMN c text;\n-- +goose Down\nALTER TABLE t DROP COLUMN c;\n")
	write("00005_contract.sql", "-- contract: nothing reads t.a since v0.30.0\n-- +goose Up\nALTER TABLE t DROP COLUMN a;\n")
	problems, notes := checkMigrations(t, dir, "v0.29.0", sums)
	want := []string{"00001_t.sql was released in v0.29.0 and has been edited", "00002_gone.sql was released in v0.29.0 and is gone", "00003_drop.sql is newer than v0.29.0"}
	if len(problems) != len(want) {
		t.Fatalf("problems %q, want %d: %q", problems, len(want), want)
	}
	for i, w := range want {
		if !strings.HasPrefix(problems[i], w) {
			t.Errorf("problem %d: %q, want it to start %q", i, problems[i], w)
		}
	}
	if len(notes) != 2 || !strings.Contains(notes[0], "00005_contract.sql contracts") {
		t.Errorf("notes %q", notes)
	}
}

// checkMigrations checks dir's migrations against the release's sums:
// released ones unchanged, later ones expand-only unless marked
// "-- contract: ...". It returns the problems (sorted by file) and notes.
func checkMigrations(t *testing.T, dir, tag string, sums map[string]string) (problems, notes []string) {
	t.Helper()
	names := make([]string, 0, len(sums))
	for name := range sums {
		names = append(names, name)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := sums[filepath.Base(f)]; !ok {
			names = append(names, filepath.Base(f))
		}
	}
	slices.Sort(names)
	checked := 0
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if want, ok := sums[name]; ok {
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s was released in %s and is gone: %v", name, tag, err))
			} else if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != want {
				problems = append(problems, fmt.Sprintf("%s was released in %s and has been edited since: a released migration is never changed (write a new one)", name, tag))
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		checked++
		if why := contractNote.FindStringSubmatch(string(b)); why != nil {
			notes = append(notes, fmt.Sprintf("%s contracts the schema: %s", name, why[1]))
			continue
		}
		for _, s := range contractStatements(upSection(string(b))) {
			problems = append(problems, fmt.Sprintf("%s is newer than %s and would break %s's binaries during a rolling upgrade: %q; "+
				"add instead (expand), and remove in a later release's migration marked \"-- contract: <why, naming the release since which nothing uses it>\"",
				name, tag, tag, s))
		}
	}
	return problems, append(notes, fmt.Sprintf("%d migrations after %s checked", checked, tag))
}

// The classifier on the shapes it must tell apart.
func TestContractStatements(t *testing.T) {
	for _, tc := range []struct {
		sql      string
		contract bool
	}{
		{"CREATE TABLE t (id int NOT NULL, name text NOT NULL DEFAULT '')", false},
		{"ALTER TABLE clients ADD COLUMN tokens_valid_after timestamptz", false},
		{"ALTER TABLE clients ADD COLUMN public boolean NOT NULL DEFAULT false", false},
		{"ALTER TABLE clients ADD COLUMN public boolean NOT NULL", true},
		{"ALTER TABLE clients ALTER COLUMN secret_hash DROP NOT NULL", false},
		{"ALTER TABLE clients DROP CONSTRAINT clients_secret_hash_check", false},
		{"ALTER TABLE clients DROP CONSTRAINT clients_name_key", true},
		{"CREATE INDEX usage_idx ON usage_hourly (client_id, hour)", false},
		{"DROP TABLE legacy", true},
		{"ALTER TABLE clients DROP COLUMN plan", true},
		{"alter table clients drop plan", true},
		{"ALTER TABLE clients RENAME COLUMN plan TO tier", true},
		{"ALTER TABLE clients RENAME TO apps", true},
		{"ALTER TABLE clients ALTER COLUMN plan TYPE varchar(10)", true},
		{"ALTER TABLE clients ALTER COLUMN plan SET NOT NULL", true},
		{"ALTER TABLE clients ADD CONSTRAINT plan_short CHECK (length(plan) < 10)", true},
		{"DROP INDEX clients_plan_idx", true},
		{"TRUNCATE revoked_tokens", true},
		{"CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN DROP TABLE x; RETURN NEW; END $$ LANGUAGE plpgsql", false},
		{"INSERT INTO t VALUES ('DROP TABLE x; RENAME')", false},
		{"-- DROP TABLE x\nSELECT 1", false},
	} {
		if got := len(contractStatements(tc.sql)) > 0; got != tc.contract {
			t.Errorf("%q: contract %v, want %v", tc.sql, got, tc.contract)
		}
	}
}

func FuzzContractStatements(f *testing.F) {
	files, _ := filepath.Glob("*.sql")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("ALTER TABLE t DROP c; $$ unterminated")
	f.Fuzz(func(t *testing.T, sql string) {
		for _, s := range contractStatements(upSection(sql)) {
			if s == "" {
				t.Fatalf("empty statement reported for %q", sql)
			}
		}
	})
}

// contractNote marks a migration that contracts the schema on purpose.
var contractNote = regexp.MustCompile(`(?m)^--\s*contract:\s*(.*\bv\d+\.\d+\.\d+\b.*)$`)

// upSection is the migration's "-- +goose Up" part (the whole text when
// it has no goose annotations).
func upSection(sql string) string {
	_, up, ok := strings.Cut(sql, "-- +goose Up")
	if !ok {
		up = sql
	}
	up, _, _ = strings.Cut(up, "-- +goose Down")
	return up
}

var (
	// Comments, string literals and dollar-quoted bodies (functions) hold
	// no statement of the migration itself.
	lineComment = regexp.MustCompile(`--[^\n]*`)
	quoted      = regexp.MustCompile(`'(?:[^']|'')*'`)
	dollar      = regexp.MustCompile(`(?s)\$([A-Za-z_]*)\$.*?\$([A-Za-z_]*)\$`)
	space       = regexp.MustCompile(`\s+`)

	// What breaks the previous release's reads or writes.
	contracting = []*regexp.Regexp{
		regexp.MustCompile(`^DROP (TABLE|VIEW|MATERIALIZED VIEW|FUNCTION|TYPE|SCHEMA|SEQUENCE|INDEX|TRIGGER)\b`),
		regexp.MustCompile(`^TRUNCATE\b`),
		regexp.MustCompile(`\bRENAME\b`),
		regexp.MustCompile(`\bALTER (COLUMN )?[^ ]+ (SET DATA )?TYPE\b`),
		regexp.MustCompile(`\bSET NOT NULL\b`),
		regexp.MustCompile(`\bADD CONSTRAINT\b`),
	}
	alterTable = regexp.MustCompile(`^ALTER TABLE\b`)
	// In ALTER TABLE: a drop that is not DROP NOT NULL or the drop of a
	// CHECK constraint (Postgres names them <table>_<column>_check):
	// those loosen, the rest remove.
	alterDrop     = regexp.MustCompile(`\bDROP (CONSTRAINT (IF EXISTS )?[^ ,]+|NOT NULL|[^ ,]+)`)
	looseningDrop = regexp.MustCompile(`^DROP (NOT NULL|CONSTRAINT (IF EXISTS )?[^ ,]+_CHECK)$`)
	// ADD COLUMN ... NOT NULL without DEFAULT: the previous release's
	// INSERTs do not name the column.
	addColumn = regexp.MustCompile(`\bADD (COLUMN )?[^,]*`)
)

// contractStatements are the statements of sql that would break binaries
// built for the schema before it.
func contractStatements(sql string) []string {
	sql = dollar.ReplaceAllString(sql, "''")
	sql = quoted.ReplaceAllString(sql, "''")
	sql = lineComment.ReplaceAllString(sql, " ")
	var out []string
	for _, stmt := range strings.Split(sql, ";") {
		s := strings.ToUpper(strings.TrimSpace(space.ReplaceAllString(stmt, " ")))
		if s == "" {
			continue
		}
		if bad := contractReason(s); bad != "" {
			out = append(out, fmt.Sprintf("%s (%s)", strings.TrimSpace(space.ReplaceAllString(stmt, " ")), bad))
		}
	}
	return out
}

// contractReason says why the upper-cased, single-spaced statement s
// contracts the schema, or "".
func contractReason(s string) string {
	for _, re := range contracting {
		if m := re.FindString(s); m != "" {
			return strings.TrimSpace(m)
		}
	}
	if !alterTable.MatchString(s) {
		return ""
	}
	for _, m := range alterDrop.FindAllString(s, -1) {
		if !looseningDrop.MatchString(m) {
			return m
		}
	}
	for _, m := range addColumn.FindAllString(s, -1) {
		if strings.Contains(m, "NOT NULL") && !strings.Contains(m, "DEFAULT") {
			return "ADD COLUMN NOT NULL without DEFAULT"
		}
	}
	return ""
}
