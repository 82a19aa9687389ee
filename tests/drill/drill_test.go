package main

// The drill's own bookkeeping; the drill itself runs as make drill.

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	snap := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return snap.Add(d) }
	writes := []write{
		{seq: 0, sent: at(-3 * time.Second), ackd: at(-2 * time.Second)},            // kept
		{seq: 1, sent: at(-10 * time.Millisecond), ackd: at(10 * time.Millisecond)}, // in flight
		{seq: 2, sent: at(time.Millisecond), ackd: at(2 * time.Millisecond)},        // lost
		{seq: 3, sent: at(time.Second), ackd: at(2 * time.Second)},                  // lost
	}
	f := classify(writes, snap)
	seqs := func(ws []write) []int {
		var s []int
		for _, w := range ws {
			s = append(s, w.seq)
		}
		return s
	}
	if !slices.Equal(seqs(f.kept), []int{0}) || !slices.Equal(seqs(f.straddling), []int{1}) || !slices.Equal(seqs(f.lost), []int{2, 3}) {
		t.Errorf("classify = kept %v, in flight %v, lost %v", seqs(f.kept), seqs(f.straddling), seqs(f.lost))
	}
	for _, c := range []struct {
		ws   []write
		want string
	}{
		{nil, "-"},
		{writes[:1], "rpo-00000"},
		{writes[2:], "rpo-00002..rpo-00003"},
	} {
		if got := seqRange(c.ws); got != c.want {
			t.Errorf("seqRange(%d writes) = %q, want %q", len(c.ws), got, c.want)
		}
	}
}

func jwt(header string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + ".e30.sig"
}

func TestKidOf(t *testing.T) {
	for _, c := range []struct {
		token, want, err string
	}{
		{jwt(`{"alg":"ES256","kid":"abc"}`), "abc", ""},
		{jwt(`{"alg":"ES256"}`), "", "no kid"},
		{"opaque", "", "not a JWT"},
		{"!!.e30.sig", "", "header"},
		{jwt(`[1]`), "", "header"},
	} {
		got, err := kidOf(c.token)
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("kidOf(%q) = %q, %v; want %q, error with %q", c.token, got, err, c.want, c.err)
		}
	}
}

func FuzzKidOf(f *testing.F) {
	f.Add(jwt(`{"kid":"k"}`))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		kid, err := kidOf(s)
		if (err == nil) == (kid == "") {
			t.Fatalf("kidOf(%q) = %q, %v: a kid xor an error", s, kid, err)
		}
	})
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://helix:s3cret@127.0.0.1:5432/postgres?sslmode=disable": "postgres://helix:***@127.0.0.1:5432/postgres?sslmode=disable",
		"postgres://helix@127.0.0.1/db":                                   "postgres://helix@127.0.0.1/db",
		"postgres://u:p@ss:w@h/db":                                        "postgres://u:***@h/db",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCompareCounts(t *testing.T) {
	before := map[string]int64{"clients": 3, "users": 2}
	if p := compareCounts(before, map[string]int64{"clients": 3, "users": 2}); len(p) != 0 {
		t.Errorf("equal counts: %v", p)
	}
	p := compareCounts(before, map[string]int64{"clients": 2, "extra": 1})
	want := []string{"table clients: 3 rows in the backup, 2 restored", "table users: 2 rows in the backup, 0 restored", "table extra restored but not in the backup"}
	if !slices.Equal(p, want) {
		t.Errorf("compareCounts = %q, want %q", p, want)
	}
}

func TestUnusableKids(t *testing.T) {
	log := filepath.Join(t.TempDir(), "helix-authz.log")
	lines := `{"level":"INFO","msg":"listening"}
not json
{"level":"ERROR","msg":"signing key unusable","kid":"a","error":"wrong key-encryption key"}
{"level":"ERROR","msg":"signing key unusable","kid":"b","error":"other"}
{"level":"ERROR","msg":"signing key unusable","kid":"a","error":"wrong key-encryption key"}
`
	if err := os.WriteFile(log, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := unusableKids(log); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("unusableKids = %v", got)
	}
	if got := unusableError(log); got != "wrong key-encryption key" {
		t.Errorf("unusableError = %q", got)
	}
	if got := unusableKids(filepath.Join(t.TempDir(), "missing")); len(got) != 0 {
		t.Errorf("missing log: %v", got)
	}
}
