package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/helixflow/helixflow/extauthz/admin"
)

func userRows(tw *tabwriter.Writer, us ...admin.UserView) {
	fmt.Fprintln(tw, "ID\tEMAIL\tVERIFIED\tPLATFORM ADMIN\tNAME\tCREATED")
	for _, u := range us {
		email := u.Email
		if u.ErasedAt != nil {
			email = "(erased)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%s\t%s\n", u.ID, email, u.EmailVerified, u.PlatformAdmin, u.DisplayName, when(&u.CreatedAt))
	}
}

func runUsers(ctx context.Context, sub string, args []string, out io.Writer) error {
	switch sub {
	case "list", "get", "set-admin":
	default:
		return fmt.Errorf("%w: unknown subcommand users %q (list, get, set-admin, export, erase)", errUsage, sub)
	}
	var af adminFlags
	fs := flag.NewFlagSet("users "+sub, flag.ContinueOnError)
	af.register(fs)
	var (
		after string
		limit int
		off   bool
	)
	nargs := 1
	switch sub {
	case "list":
		nargs = 0
		fs.StringVar(&after, "after", "", "list the users whose id sorts after this one (the next page)")
		fs.IntVar(&limit, "limit", 100, "at most this many users (1 to 1000)")
	case "set-admin":
		fs.BoolVar(&off, "off", false, "withdraw the platform-admin flag instead of granting it")
	}
	pos, err := parse(fs, args, nargs, "users "+sub+" takes "+map[int]string{0: "no argument", 1: "a user id"}[nargs])
	if err != nil {
		return err
	}
	c, err := af.client(ctx)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		vs, err := c.ListUsers(ctx, after, limit)
		if err != nil {
			return err
		}
		return af.print(out, vs, func(tw *tabwriter.Writer) { userRows(tw, vs...) })
	case "get":
		v, err := c.GetUser(ctx, pos[0])
		if err != nil {
			return err
		}
		return af.print(out, v, func(tw *tabwriter.Writer) { userRows(tw, *v) })
	default: // set-admin
		v, err := c.SetPlatformAdmin(ctx, pos[0], !off)
		if err != nil {
			return err
		}
		return af.print(out, v, func(tw *tabwriter.Writer) { userRows(tw, *v) })
	}
}

func orgRows(tw *tabwriter.Writer, os ...admin.OrgView) {
	fmt.Fprintln(tw, "ID\tNAME\tPLANS\tSCOPES\tMAX KEYS\tMAX CLIENTS")
	for _, o := range os {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", o.ID, o.Name, strings.Join(o.Policy.Plans, ","),
			strings.Join(o.Policy.Scopes, ","), o.Policy.MaxAPIKeys, o.Policy.MaxClients)
	}
}

func runOrgs(ctx context.Context, sub string, args []string, out io.Writer) error {
	switch sub {
	case "list", "get", "create", "policy":
	default:
		return fmt.Errorf("%w: unknown subcommand orgs %q (list, get, create, policy)", errUsage, sub)
	}
	var af adminFlags
	fs := flag.NewFlagSet("orgs "+sub, flag.ContinueOnError)
	af.register(fs)
	var (
		name, owner           string
		plans, scopes         listFlag
		maxKeys, maxClients   int
		nargs                 = 1
		usage                 = "orgs " + sub + " takes an organization id"
		setPlans, setScopes   bool
		setMaxKey, setMaxClis bool
	)
	switch sub {
	case "list":
		nargs, usage = 0, "orgs list takes no argument"
	case "create":
		nargs, usage = 0, "orgs create takes no argument (--name, --owner)"
		fs.StringVar(&name, "name", "", "the organization's name (required)")
		fs.StringVar(&owner, "owner", "", "id or email of the existing, verified user who owns it (required)")
	case "policy":
		fs.Var(&plans, "plans", "plans its clients may have (repeatable or comma-separated; --plans '' for none); unchanged when not given")
		fs.Var(&scopes, "scopes", "scopes its clients and keys may have (repeatable or comma-separated); unchanged when not given")
		fs.IntVar(&maxKeys, "max-keys", 0, "live API keys it may hold; unchanged when not given")
		fs.IntVar(&maxClients, "max-clients", 0, "clients it may hold; unchanged when not given")
	}
	pos, err := parse(fs, args, nargs, usage)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "plans":
			setPlans = true
		case "scopes":
			setScopes = true
		case "max-keys":
			setMaxKey = true
		case "max-clients":
			setMaxClis = true
		}
	})
	c, err := af.client(ctx)
	if err != nil {
		return err
	}
	var v *admin.OrgView
	switch sub {
	case "list":
		vs, err := c.ListOrgs(ctx)
		if err != nil {
			return err
		}
		return af.print(out, vs, func(tw *tabwriter.Writer) { orgRows(tw, vs...) })
	case "get":
		v, err = c.GetOrg(ctx, pos[0])
	case "create":
		if name == "" || owner == "" {
			return fmt.Errorf("%w: --name and --owner are required", errUsage)
		}
		v, err = c.CreateOrg(ctx, admin.OrgRequest{Name: name, Owner: owner})
	case "policy":
		if !setPlans && !setScopes && !setMaxKey && !setMaxClis {
			return fmt.Errorf("%w: orgs policy needs at least one of --plans, --scopes, --max-keys, --max-clients", errUsage)
		}
		// The API replaces the whole policy: start from the current one.
		cur, err := c.GetOrg(ctx, pos[0])
		if err != nil {
			return err
		}
		p := cur.Policy
		if setPlans {
			p.Plans = append([]string{}, plans...)
		}
		if setScopes {
			p.Scopes = append([]string{}, scopes...)
		}
		if setMaxKey {
			p.MaxAPIKeys = maxKeys
		}
		if setMaxClis {
			p.MaxClients = maxClients
		}
		v, err = c.SetOrgPolicy(ctx, pos[0], admin.PolicyRequest{Plans: &p.Plans, Scopes: &p.Scopes, MaxAPIKeys: &p.MaxAPIKeys, MaxClients: &p.MaxClients})
		if err != nil {
			return err
		}
	}
	if err != nil {
		return err
	}
	return af.print(out, v, func(tw *tabwriter.Writer) { orgRows(tw, *v) })
}
