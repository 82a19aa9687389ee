package main

// The drill, step by step: state, backup, more writes, failure, restore,
// repoint, proof, figures.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/samplemodel"
	helixstack "github.com/helixflow/helixflow/internal/stack"
)

// restoredDB is the database the dump is restored into on the fresh
// server (a name other than the old one's: any works).
const restoredDB = "helix"

func drill(ctx context.Context, o *options) error {
	tools, err := findTools()
	if err != nil {
		return err
	}
	top, err := os.MkdirTemp("", "helix-drill-")
	if err != nil {
		return err
	}
	// The postgres user (Postgres refuses root) passes through to the
	// servers' folders below.
	if err := os.Chmod(top, 0o711); err != nil {
		return err
	}
	if o.keep {
		logf("state kept in %s", top)
	} else {
		defer os.RemoveAll(top)
	}
	backups := filepath.Join(top, "backups") // elsewhere than the database: another disk or bucket in real life
	if err := os.Mkdir(backups, 0o700); err != nil {
		return err
	}

	st, err := helixstack.New(helixstack.Options{
		Root: o.root, Dir: filepath.Join(top, "stack"),
		Workers:            []helixstack.Worker{{Name: "helix-worker-1", Models: []string{samplemodel.Name}}},
		Args:               map[string][]string{helixstack.Authz: {"--key-publish-ahead=2s"}},
		EnvoyDiscardStdout: true,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	defer st.Close()
	logf("starting the stack in %s (logs in %s)", st.Dir(), st.LogDir())
	if err := st.Start(ctx); err != nil {
		return err
	}
	s, err := newState(st)
	if err != nil {
		return err
	}
	logf("making the state: %d clients, tokens under %d signing keys, API keys, revocations, %d people, an organization, usage rows", nClients, keyRotate+1, nPeople)
	if err := s.seed(ctx); err != nil {
		return err
	}
	logf("state made and checked through Envoy: %d tokens (kids %s), %d revoked tokens, %d API keys + 1 revoked, %d people",
		len(s.tokens), strings.Join(tokenKids(s.tokens), ", "), len(s.revoked), len(s.apiKeys), len(s.people))

	if o.history > 0 {
		t := time.Now()
		if err := addHistory(ctx, st.DatabaseURL, o.history); err != nil {
			return err
		}
		logf("added %d rows of usage history in %s", o.history, time.Since(t).Round(time.Millisecond))
	}

	// Writes go on through the backup and until the failure.
	w := startWriter(ctx, s.admin, o.writeEvery)
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	logf("backup: pg_dump --format=custom of %s", redact(st.DatabaseURL))
	b, err := takeBackup(ctx, tools, st.DatabaseURL, filepath.Join(backups, "helix.dump"))
	if err != nil {
		w.stopWriter()
		return err
	}
	logf("backup done: %d bytes in %s, snapshot at %s", b.size, b.took.Round(time.Millisecond), b.snapshot.Format("15:04:05.000"))
	afterBackup := time.Now()
	revokedLate, err := s.revokeAfterBackup(ctx)
	if err != nil {
		w.stopWriter()
		return err
	}
	logf("after the backup: token %d and API key %s revoked, Check refuses both", revokedLate, s.apiKeyIDs[1])
	if err := sleep(ctx, o.after-time.Since(afterBackup)); err != nil {
		w.stopWriter()
		return err
	}

	// The failure: Postgres dies and its data folder is deleted.
	writes, writeErrs, lastErr := w.stopWriter()
	if writeErrs > 0 {
		return fmt.Errorf("%d of the writes failed before the failure, the last: %w", writeErrs, lastErr)
	}
	if len(writes) == 0 {
		return errors.New("no write was acknowledged: nothing measures the RPO")
	}
	failure := time.Now()
	if err := st.KillProcess(helixstack.Postgres); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(st.Dir(), "pg")); err != nil {
		return err
	}
	logf("FAILURE: Postgres killed (SIGKILL) and its data folder deleted; %d writes acknowledged until then", len(writes))
	probe := startProbe(s, s.tokens[0])

	// The restore: a fresh server, the dump restored into it, helix-authz
	// pointed at it and restarted with the same KEK.
	t := time.Now()
	srv, err := pgtest.StartProcess(filepath.Join(top, "restored"))
	if err != nil {
		probe.stopProbe(time.Now())
		return err
	}
	defer srv.Stop() //nolint:errcheck // the end of the drill
	if err := durable(ctx, srv.DSN()); err != nil {
		probe.stopProbe(time.Now())
		return err
	}
	pw := make([]byte, 18)
	_, _ = rand.Read(pw)
	rolePassword := hex.EncodeToString(pw)
	dsn, err := newDatabase(ctx, srv.DSN(), restoredDB, rolePassword)
	if err != nil {
		probe.stopProbe(time.Now())
		return err
	}
	serverUp := time.Now()
	if err := restoreInto(ctx, tools, dsn, b); err != nil {
		probe.stopProbe(time.Now())
		return err
	}
	restored := time.Now()
	logf("restored into a fresh Postgres (%s): pg_restore took %s, the server %s", redact(dsn), restored.Sub(serverUp).Round(time.Millisecond), serverUp.Sub(t).Round(time.Millisecond))
	// Counted before helix-authz writes anything there.
	restoredCounts, err := countsFrom(ctx, dsn)
	if err != nil {
		probe.stopProbe(time.Now())
		return err
	}
	t = time.Now()
	if err := st.StopProcess(helixstack.Authz); err != nil {
		probe.stopProbe(time.Now())
		return err
	}
	st.SetDatabaseURL(dsn)
	if err := st.StartProcess(ctx, helixstack.Authz); err != nil {
		probe.stopProbe(time.Now())
		return err
	}
	restarted := time.Now()
	firstWrite, err := s.firstWrite(ctx)
	if err != nil {
		probe.stopProbe(time.Now())
		return err
	}
	firstCheck, err := probe.firstOKAfter(ctx, restarted, 60*time.Second)
	outageOK, outageRefused := probe.stopProbe(t)
	if err != nil {
		return err
	}
	rto := firstCheck.Sub(failure)
	logf("helix-authz restarted on the restored database in %s; first request admitted by Check at +%s after the failure",
		restarted.Sub(t).Round(time.Millisecond), rto.Round(time.Millisecond))

	var problems []string
	problems = append(problems, compareCounts(b.counts, restoredCounts)...)
	rpo := classify(writes, b.snapshot)
	lostFound, keptMissing, straddleKept, err := checkWrites(ctx, dsn, rpo)
	if err != nil {
		return err
	}
	problems = append(problems, keptMissing...)
	problems = append(problems, lostFound...)
	problems = append(problems, s.verify(ctx)...)
	problems = append(problems, s.checkKeys(ctx, b.counts["signing_keys"], dsn)...)
	lostRev, err := s.lostRevocations(ctx, revokedLate)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if v, err := s.admin.VerifyAudit(ctx); err != nil || !v.OK {
		problems = append(problems, fmt.Sprintf("audit chain after the restore: %+v %v", v, errOrNil(err)))
	}
	nk, err := noKEK(ctx, s, srv, rolePassword, tools, b)
	if err != nil {
		return err
	}

	// The figures.
	fmt.Println()
	fmt.Println("rows per table: in the backup's snapshot / restored")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, name := range sortedKeys(b.counts) {
		mark := "ok"
		if b.counts[name] != restoredCounts[name] {
			mark = "MISMATCH"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", name, b.counts[name], restoredCounts[name], mark)
	}
	_ = tw.Flush()
	fmt.Println()
	fmt.Printf("RPO: %s of writes lost, the time from the backup's snapshot (%s) to the failure (%s): -after here, the time since the last backup in production\n",
		failure.Sub(b.snapshot).Round(time.Millisecond), b.snapshot.Format("15:04:05.000"), failure.Format("15:04:05.000"))
	fmt.Printf("     %d writes acknowledged before the snapshot: all restored (%s)\n", len(rpo.kept), seqRange(rpo.kept))
	fmt.Printf("     %d writes acknowledged after it: lost (%s)\n", len(rpo.lost), seqRange(rpo.lost))
	if len(rpo.straddling) > 0 {
		fmt.Printf("     %d in flight at the snapshot: %d restored, %d lost\n", len(rpo.straddling), straddleKept, len(rpo.straddling)-straddleKept)
	}
	if lostRev != "" {
		fmt.Println("     lost with them:", lostRev)
	}
	fmt.Printf("RTO: %s from the failure to the first request Check admits on the restored database\n", rto.Round(time.Millisecond))
	since := func(at time.Time) string { return "+" + at.Sub(failure).Round(time.Millisecond).String() }
	fmt.Printf("     after the failure: fresh Postgres up %s, pg_restore done %s, helix-authz up on it %s, first write (admin API) %s, first Check admitted %s\n",
		since(serverUp), since(restored), since(restarted), since(firstWrite), since(firstCheck))
	fmt.Println("     (no human in the loop: add the time to notice the failure and decide to restore)")
	fmt.Printf("     until helix-authz's restart, a pre-backup token's requests: %d admitted, %d refused (helix-authz's in-memory copies)\n", outageOK, outageRefused)
	fmt.Printf("backup: %d bytes, pg_dump %s; machine: %d CPUs, %s, load average %s\n", b.size, b.took.Round(time.Millisecond),
		runtime.NumCPU(), runtime.GOOS+"/"+runtime.GOARCH, loadAverage())
	fmt.Println()
	fmt.Println("WITHOUT THE KEK the same dump is no use for signing keys:", nk)
	if len(problems) > 0 {
		return fmt.Errorf("the restore lost or changed data:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Println("\nPASS: every pre-backup token validates (introspection and Check), revoked ones stay refused, API keys work, signing keys open with the KEK, people log in, counts match")
	return nil
}

func tokenKids(ts []token) []string {
	var kids []string
	for _, t := range ts {
		if !slices.Contains(kids, t.kid) {
			kids = append(kids, t.kid)
		}
	}
	return kids
}

func compareCounts(before, after map[string]int64) []string {
	var problems []string
	for _, name := range sortedKeys(before) {
		if before[name] != after[name] {
			problems = append(problems, fmt.Sprintf("table %s: %d rows in the backup, %d restored", name, before[name], after[name]))
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			problems = append(problems, "table "+name+" restored but not in the backup")
		}
	}
	return problems
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkWrites looks the writes up in the restored database: the kept
// must be there, the lost must not; it returns the problems and how many
// of the straddling ones were kept.
func checkWrites(ctx context.Context, dsn string, f rpoFigures) (lostFound, keptMissing []string, straddleKept int, err error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("connect to the restored database: %w", err)
	}
	defer conn.Close(context.Background())
	present := func(ws []write) (map[string]bool, error) {
		ids := make([]string, len(ws))
		for i, w := range ws {
			ids[i] = w.id
		}
		rows, err := conn.Query(ctx, "SELECT id FROM clients WHERE id = ANY($1)", ids)
		if err != nil {
			return nil, fmt.Errorf("look the writes up: %w", err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		m := map[string]bool{}
		for _, id := range got {
			m[id] = true
		}
		return m, err
	}
	for _, group := range []struct {
		ws   []write
		want bool
	}{{f.kept, true}, {f.lost, false}} {
		m, err := present(group.ws)
		if err != nil {
			return nil, nil, 0, err
		}
		for _, w := range group.ws {
			switch {
			case group.want && !m[w.id]:
				keptMissing = append(keptMissing, fmt.Sprintf("write rpo-%05d acknowledged before the backup is missing", w.seq))
			case !group.want && m[w.id]:
				lostFound = append(lostFound, fmt.Sprintf("write rpo-%05d sent after the backup's snapshot is in it", w.seq))
			}
		}
	}
	m, err := present(f.straddling)
	if err != nil {
		return nil, nil, 0, err
	}
	return lostFound, keptMissing, len(m), nil
}

// checkKeys: the restored signing keys open with the KEK. helix-authz
// logged none unusable, publishes the same kids, signs new tokens with a
// restored key, and made no new one.
func (s *state) checkKeys(ctx context.Context, backedUp int64, dsn string) []string {
	var problems []string
	if kids := unusableKids(filepath.Join(s.st.LogDir(), helixstack.Authz+".log")); len(kids) > 0 {
		problems = append(problems, fmt.Sprintf("helix-authz logged signing keys unusable after the restore: %s", strings.Join(kids, ", ")))
	}
	kids, err := s.jwksKids(ctx, s.st.Issuer)
	if err != nil {
		return append(problems, err.Error())
	}
	if !slices.Equal(kids, s.kids) {
		problems = append(problems, fmt.Sprintf("JWKS after the restore %v, at the backup %v", kids, s.kids))
	}
	t, err := s.issue(ctx, s.clients[0])
	if err != nil {
		return append(problems, "a token after the restore: "+err.Error())
	}
	if !slices.Contains(s.kids, t.kid) {
		problems = append(problems, "a token after the restore is signed by a new key "+t.kid)
	}
	counts, err := countsFrom(ctx, dsn)
	if err != nil {
		return append(problems, err.Error())
	}
	if counts["signing_keys"] != backedUp {
		problems = append(problems, fmt.Sprintf("signing_keys: %d rows after helix-authz restarted, %d in the backup", counts["signing_keys"], backedUp))
	}
	return problems
}

// durable turns back on what internal/pgtest turns off for speed (fsync,
// synchronous commits, full-page writes): the restored server stands in
// for a production one, and pg_restore's time should be a durable one's.
func durable(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to the fresh server: %w", err)
	}
	defer conn.Close(context.Background())
	for _, q := range []string{"ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET synchronous_commit = on",
		"ALTER SYSTEM SET full_page_writes = on", "SELECT pg_reload_conf()"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("fresh server: %s: %w", q, err)
		}
	}
	return nil
}

// loadAverage is the 1-minute load average (Linux), which says how
// quiet the machine was; "?" elsewhere.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// redact hides a database URL's password.
func redact(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.LastIndex(dsn, "@"); at > i {
			if colon := strings.Index(dsn[i+3:at], ":"); colon >= 0 {
				return dsn[:i+3+colon] + ":***" + dsn[at:]
			}
		}
	}
	return dsn
}

// probe sends a pre-backup token's request through Envoy every 50 ms
// from the failure on and keeps each answer.
type probe struct {
	stop context.CancelFunc
	done chan struct{}
	mu   sync.Mutex
	res  []probeResult
}

type probeResult struct {
	sent, answered time.Time
	ok             bool
}

func startProbe(s *state, t token) *probe {
	ctx, cancel := context.WithCancel(context.Background())
	p := &probe{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			sent := time.Now()
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			code, err := s.infer(rctx, "Authorization", "Bearer "+t.value)
			rcancel()
			if ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			p.res = append(p.res, probeResult{sent: sent, answered: time.Now(), ok: err == nil && code == http.StatusOK})
			p.mu.Unlock()
			_ = sleep(ctx, 50*time.Millisecond)
		}
	}()
	return p
}

// firstOKAfter waits for the first admitted request sent after from and
// returns when it was answered.
func (p *probe) firstOKAfter(ctx context.Context, from time.Time, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		p.mu.Lock()
		for _, r := range p.res {
			if r.ok && r.sent.After(from) {
				p.mu.Unlock()
				return r.answered, nil
			}
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no request admitted within %s of helix-authz's restart on the restored database", limit)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}

// stopProbe stops the requests and counts those sent before until that
// were admitted and refused.
func (p *probe) stopProbe(until time.Time) (ok, refused int) {
	p.stop()
	<-p.done
	for _, r := range p.res {
		switch {
		case !r.sent.Before(until):
		case r.ok:
			ok++
		default:
			refused++
		}
	}
	return ok, refused
}
