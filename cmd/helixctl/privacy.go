package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
)

// auditQueryFlags registers the audit endpoints' filters.
type auditQueryFlags struct {
	actor, target, action, since, until string
	limit                               int
	before                              int64
}

func (q *auditQueryFlags) register(fs *flag.FlagSet, list bool) {
	fs.StringVar(&q.actor, "actor", "", `only rows of this actor ("user:<uuid>", "admin-token", "client:<id>", ...)`)
	fs.StringVar(&q.target, "target", "", "only rows about this target")
	fs.StringVar(&q.action, "action", "", `only this action (e.g. "account.login")`)
	fs.StringVar(&q.since, "since", "", "only rows at or after this time: RFC 3339, or a duration ago (24h)")
	fs.StringVar(&q.until, "until", "", "only rows before this time: RFC 3339, or a duration ago")
	if list {
		fs.IntVar(&q.limit, "limit", audit.DefaultListLimit, fmt.Sprintf("at most this many rows, newest first (1 to %d)", audit.MaxListLimit))
		fs.Int64Var(&q.before, "before", 0, "only rows before this seq (the next page: the last seq shown)")
	}
}

// parseWhen reads an RFC 3339 time or a duration before now.
func parseWhen(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%w: --%s %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (24h)", errUsage, name, v)
}

func (q *auditQueryFlags) query(now time.Time) (admin.AuditQuery, error) {
	aq := admin.AuditQuery{Actor: q.actor, Target: q.target, Action: q.action, Limit: q.limit, Before: q.before}
	var err error
	if aq.Since, err = parseWhen("since", q.since, now); err != nil {
		return aq, err
	}
	if aq.Until, err = parseWhen("until", q.until, now); err != nil {
		return aq, err
	}
	return aq, nil
}

func auditRows(tw *tabwriter.Writer, rows []audit.Row) {
	fmt.Fprintln(tw, "SEQ\tAT\tACTOR\tACTION\tTARGET\tRESULT\tOPERATOR\tSOURCE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.At.UTC().Format(time.RFC3339), r.Actor, r.Action,
			orDash(r.Target), r.Result, orDash(r.Operator), orDash(r.Source))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// errNotVerified makes helixctl audit verify exit with status 1.
var errNotVerified = errors.New("the audit trail does not verify")

func runAudit(ctx context.Context, sub string, args []string, out io.Writer) error {
	switch sub {
	case "list", "verify", "export":
	default:
		return fmt.Errorf("%w: unknown subcommand audit %q (list, verify, export)", errUsage, sub)
	}
	var af adminFlags
	fs := flag.NewFlagSet("audit "+sub, flag.ContinueOnError)
	af.register(fs)
	var q auditQueryFlags
	var file string
	switch sub {
	case "list":
		q.register(fs, true)
	case "export":
		q.register(fs, false)
		fs.StringVar(&file, "file", "", "write to this new file (mode 0600) instead of standard output")
	}
	if _, err := parse(fs, args, 0, "audit "+sub+" takes no argument"); err != nil {
		return err
	}
	aq, err := q.query(time.Now())
	if err != nil {
		return err
	}
	c, err := af.client(ctx)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		rows, err := c.ListAudit(ctx, aq)
		if err != nil {
			return err
		}
		return af.print(out, rows, func(tw *tabwriter.Writer) { auditRows(tw, rows) })
	case "verify":
		v, err := c.VerifyAudit(ctx)
		if err != nil {
			return err
		}
		err = af.print(out, v, func(tw *tabwriter.Writer) {
			if v.OK {
				fmt.Fprintf(tw, "ok: %d rows verify, from seq %d to %d\n", v.Rows, v.AnchorSeq+1, v.HeadSeq)
			} else {
				fmt.Fprintf(tw, "NOT OK: row %d: %s (%d rows verified before it)\n", v.FirstBadSeq, v.Reason, v.Rows)
			}
			fmt.Fprintf(tw, "head hash: %x (keep a copy elsewhere to detect a rewrite of the whole chain)\n", []byte(v.HeadHash))
		})
		if err == nil && !v.OK {
			err = fmt.Errorf("%w at row %d: %s", errNotVerified, v.FirstBadSeq, v.Reason)
		}
		return err
	}
	return writeOut(file, out, func(w io.Writer) error { return c.ExportAudit(ctx, aq, w) })
}

// writeOut runs write into out, or into a new file of mode 0600 (the data
// is personal) that is removed again when write fails: a short export
// never stays behind looking whole.
func writeOut(file string, out io.Writer, write func(io.Writer) error) (err error) {
	if file == "" {
		return write(out)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(file)
		}
	}()
	return write(f)
}

// runUsersPrivacy serves helixctl users export|erase; users list, get and
// set-admin are runUsers'.
func runUsersPrivacy(ctx context.Context, sub string, args []string, out io.Writer) error {
	var af adminFlags
	fs := flag.NewFlagSet("users "+sub, flag.ContinueOnError)
	af.register(fs)
	var (
		file string
		yes  bool
	)
	switch sub {
	case "export":
		fs.StringVar(&file, "file", "", "write to this new file (mode 0600) instead of standard output")
	case "erase":
		fs.BoolVar(&yes, "yes", false, "erase: required, since erasure cannot be undone")
	}
	pos, err := parse(fs, args, 1, "users "+sub+" takes a user id")
	if err != nil {
		return err
	}
	if sub == "erase" && !yes {
		return fmt.Errorf("%w: users erase %s cannot be undone (sessions ended, tokens and the API keys they created revoked, "+
			"personal fields removed, audit rows pseudonymised): add --yes", errUsage, pos[0])
	}
	c, err := af.client(ctx)
	if err != nil {
		return err
	}
	if sub == "export" {
		doc, err := c.ExportUser(ctx, pos[0])
		if err != nil {
			return err
		}
		return writeOut(file, out, func(w io.Writer) error { _, err := fmt.Fprintf(w, "%s\n", doc); return err })
	}
	e, err := c.EraseUser(ctx, pos[0])
	if err != nil {
		return err
	}
	return af.print(out, e, func(tw *tabwriter.Writer) {
		if e.AlreadyErased {
			fmt.Fprintln(tw, "the account had been erased already; what was left is gone too")
		}
		fmt.Fprintf(tw, "erased user %s (audit row %d)\n", e.UserID, e.AuditSeq)
		fmt.Fprintf(tw, "sessions ended\t%d\nrefresh tokens revoked\t%d\nAPI keys revoked\t%d\nmemberships removed\t%d\naudit rows pseudonymised\t%d\n",
			e.SessionsEnded, e.RefreshTokensRevoked, e.APIKeysRevoked, e.MembershipsRemoved, e.AuditRowsPseudonymised)
		for org, user := range e.OwnersPromoted {
			fmt.Fprintf(tw, "organization %s: its admin %s is now an owner\n", org, user)
		}
		if len(e.OrgsWithoutOwner) > 0 {
			fmt.Fprintf(tw, "organizations left without an owner (name one with the admin API): %s\n", strings.Join(e.OrgsWithoutOwner, ", "))
		}
	})
}
