package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/internal/cliauth"
	"github.com/helixflow/helixflow/internal/secretfile"
)

// adminFlags are the flags every admin API command takes.
type adminFlags struct {
	url, tokenFile, output, operator string
}

func (a *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.url, "admin-url", envOr("HELIX_ADMIN_URL", "http://127.0.0.1:8091"),
		"admin API URL (env HELIX_ADMIN_URL); plain http only to a loopback address")
	fs.StringVar(&a.tokenFile, "admin-token-file", "", "file holding the admin API token (default: env HELIX_ADMIN_TOKEN)")
	fs.StringVar(&a.output, "output", "table", "table or json")
	fs.StringVar(&a.operator, "operator", "", "the person acting, sent as the Helix-Operator header and kept in the audit trail "+
		"(default: env HELIX_OPERATOR, else your OS user@host)")
}

// client returns the admin API client. Its credential is the admin token
// when one is given; else the person signed in with helixctl login, whose
// access token (refreshed when due) the admin API accepts from a platform
// admin (scope helix:admin) and records as that person's action.
func (a *adminFlags) client(ctx context.Context) (*admin.Client, error) {
	if a.output != "table" && a.output != "json" {
		return nil, fmt.Errorf("%w: --output %q: want table or json", errUsage, a.output)
	}
	token, err := secretfile.Read("--admin-token-file", a.tokenFile, "HELIX_ADMIN_TOKEN")
	if err != nil {
		return nil, err
	}
	if token == "" {
		if token, err = personToken(ctx); err != nil {
			return nil, err
		}
	}
	c, err := admin.NewClient(a.url, token, nil)
	if err != nil {
		return nil, err
	}
	if a.operator != "" {
		c.Operator = a.operator
	}
	return c, nil
}

func (a *adminFlags) print(out io.Writer, v any, table func(*tabwriter.Writer)) error {
	if a.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func clientRows(tw *tabwriter.Writer, cs ...admin.ClientView) {
	fmt.Fprintln(tw, "CLIENT ID\tNAME\tPLAN\tENABLED\tSCOPES\tMODELS")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", c.ClientID, c.Name, c.Plan, c.Enabled, strings.Join(c.Scopes, ","), strings.Join(c.Models, ","))
	}
}

func runClients(ctx context.Context, sub string, args []string, out io.Writer) error {
	switch sub {
	case "create", "list", "get", "update", "delete", "rotate-secret":
	default:
		return fmt.Errorf("%w: unknown subcommand clients %q (create, list, get, update, delete, rotate-secret)", errUsage, sub)
	}
	var af adminFlags
	fs := flag.NewFlagSet("clients "+sub, flag.ContinueOnError)
	af.register(fs)
	var (
		name, plan              string
		scopes, models, aud     listFlag
		disabled, enable, disab bool
		app                     admin.AppFields
		redirects, grants       listFlag
	)
	switch sub {
	case "create", "update":
		fs.StringVar(&name, "name", "", "client name")
		fs.StringVar(&plan, "plan", "", "rate-limit plan: one of the plans in the gateway config file (create: its ratelimit.default_plan)")
		fs.Var(&scopes, "scope", "scope (repeatable or comma-separated): models:infer, models:read, models:<model>:infer, models:variant-override, helix:introspect; for a client people sign in to also account, helix:admin")
		fs.Var(&models, "model", "model the client may use (repeatable or comma-separated; \"*\" = every model). "+
			"create: none unless given; grant later with \"helixctl clients update ID --model NAME\" (update replaces the list)")
		fs.Var(&aud, "audience", "audience the client may ask tokens for (repeatable)")
		if sub == "create" {
			fs.BoolVar(&disabled, "disabled", false, "create the client disabled")
			fs.BoolVar(&app.Public, "public", false, "a client people sign in to that cannot keep a secret (a native app): no secret, "+
				"grant types authorization_code,refresh_token, PKCE S256")
			fs.Var(&redirects, "redirect-uri", "redirect URI of the authorization-code grant (repeatable; https, or http://127.0.0.1/... "+
				"whose port a public client may vary); matched exactly")
			fs.Var(&grants, "grant-type", "grant types (comma-separated): client_credentials (the default), authorization_code, refresh_token")
		} else {
			fs.BoolVar(&enable, "enable", false, "enable the client (tokens issued before stay invalid: it gets new ones)")
			fs.BoolVar(&disab, "disable", false, "disable the client: its tokens and API keys stop working at once, "+
				"and the tokens stay invalid if it is enabled again")
		}
	}
	nargs := 1
	if sub == "create" || sub == "list" {
		nargs = 0
	}
	pos, err := parse(fs, args, nargs, "clients "+sub+" takes "+map[int]string{0: "no argument", 1: "a client id"}[nargs])
	if err != nil {
		return err
	}
	c, err := af.client(ctx)
	if err != nil {
		return err
	}
	req := admin.ClientRequest{}
	if name != "" {
		req.Name = &name
	}
	if plan != "" {
		req.Plan = &plan
	}
	if scopes != nil {
		s := []string(scopes)
		req.Scopes = &s
	}
	if models != nil {
		m := []string(models)
		req.Models = &m
	}
	if aud != nil {
		a := []string(aud)
		req.Audience = &a
	}
	switch sub {
	case "create":
		if disabled {
			f := false
			req.Enabled = &f
		}
		app.RedirectURIs, app.GrantTypes = redirects, grants
		v, err := c.CreateAppClient(ctx, req, app)
		if err != nil {
			return err
		}
		return af.print(out, v, func(tw *tabwriter.Writer) {
			clientRows(tw, *v)
			if v.Public {
				fmt.Fprintf(tw, "\npublic client: no secret; redirect URIs %s\n", strings.Join(v.RedirectURIs, ", "))
			} else {
				fmt.Fprintf(tw, "\nclient_secret (shown once): %s\n", v.ClientSecret)
			}
			if len(v.Models) == 0 {
				fmt.Fprintf(tw, "no model yet: grant with helixctl clients update %s --model NAME (or --model '*')\n", v.ClientID)
			}
		})
	case "list":
		vs, err := c.ListClients(ctx)
		if err != nil {
			return err
		}
		return af.print(out, vs, func(tw *tabwriter.Writer) { clientRows(tw, vs...) })
	case "get":
		v, err := c.GetClient(ctx, pos[0])
		if err != nil {
			return err
		}
		return af.print(out, v, func(tw *tabwriter.Writer) { clientRows(tw, *v) })
	case "update":
		if enable && disab {
			return fmt.Errorf("%w: --enable and --disable together", errUsage)
		}
		if enable || disab {
			req.Enabled = &enable
		}
		v, err := c.UpdateClient(ctx, pos[0], req)
		if err != nil {
			return err
		}
		return af.print(out, v, func(tw *tabwriter.Writer) { clientRows(tw, *v) })
	case "delete":
		if err := c.DeleteClient(ctx, pos[0]); err != nil {
			return err
		}
		return af.print(out, map[string]string{"deleted": pos[0]}, func(tw *tabwriter.Writer) { fmt.Fprintf(tw, "deleted %s\n", pos[0]) })
	case "rotate-secret":
		v, err := c.RotateSecret(ctx, pos[0])
		if err != nil {
			return err
		}
		return af.print(out, v, func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "tokens issued before the rotation no longer work; ask for new ones a second from now")
			fmt.Fprintf(tw, "client_id: %s\nclient_secret (shown once): %s\n", v.ClientID, v.ClientSecret)
		})
	}
	return fmt.Errorf("%w: unknown subcommand clients %q (create, list, get, update, delete, rotate-secret)", errUsage, sub)
}

func apiKeyRows(tw *tabwriter.Writer, ks ...admin.APIKeyView) {
	fmt.Fprintln(tw, "ID\tCLIENT ID\tNAME\tSCOPES\tEXPIRES\tLAST USED\tUSES\tREVOKED")
	for _, k := range ks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", k.ID, k.ClientID, k.Name, strings.Join(k.Scopes, ","),
			when(k.ExpiresAt), when(k.LastUsedAt), k.UseCount, when(k.RevokedAt))
	}
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func runAPIKeys(ctx context.Context, sub string, args []string, out io.Writer) error {
	switch sub {
	case "create", "list", "revoke":
	default:
		return fmt.Errorf("%w: unknown subcommand apikeys %q (create, list, revoke)", errUsage, sub)
	}
	var af adminFlags
	fs := flag.NewFlagSet("apikeys "+sub, flag.ContinueOnError)
	af.register(fs)
	var (
		clientID, name, expires string
		scopes                  listFlag
	)
	switch sub {
	case "create":
		fs.StringVar(&clientID, "client", "", "client id the key belongs to (required)")
		fs.StringVar(&name, "name", "", "key name")
		fs.Var(&scopes, "scope", "scopes (default: the client's)")
		fs.StringVar(&expires, "expires-in", "", "lifetime, e.g. 720h (default: no expiry)")
	case "list":
		fs.StringVar(&clientID, "client", "", "only this client's keys")
	}
	nargs := 0
	if sub == "revoke" {
		nargs = 1
	}
	pos, err := parse(fs, args, nargs, "apikeys "+sub+" takes "+map[int]string{0: "no argument", 1: "a key id"}[nargs])
	if err != nil {
		return err
	}
	c, err := af.client(ctx)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if clientID == "" {
			return fmt.Errorf("%w: --client is required", errUsage)
		}
		v, err := c.CreateAPIKey(ctx, admin.APIKeyRequest{ClientID: clientID, Name: name, Scopes: scopes, ExpiresIn: expires})
		if err != nil {
			return err
		}
		return af.print(out, v, func(tw *tabwriter.Writer) {
			apiKeyRows(tw, *v)
			fmt.Fprintf(tw, "\nkey (shown once): %s\n", v.Key)
		})
	case "list":
		vs, err := c.ListAPIKeys(ctx, clientID)
		if err != nil {
			return err
		}
		return af.print(out, vs, func(tw *tabwriter.Writer) { apiKeyRows(tw, vs...) })
	case "revoke":
		if err := c.RevokeAPIKey(ctx, pos[0]); err != nil {
			return err
		}
		return af.print(out, map[string]string{"revoked": pos[0]}, func(tw *tabwriter.Writer) { fmt.Fprintf(tw, "revoked %s\n", pos[0]) })
	}
	return fmt.Errorf("%w: unknown subcommand apikeys %q (create, list, revoke)", errUsage, sub)
}

func runKeys(ctx context.Context, sub string, args []string, out io.Writer) error {
	if sub != "rotate" {
		return fmt.Errorf("%w: unknown subcommand keys %q (rotate)", errUsage, sub)
	}
	var af adminFlags
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	af.register(fs)
	if _, err := parse(fs, args, 0, "keys "+sub+" takes no argument"); err != nil {
		return err
	}
	c, err := af.client(ctx)
	if err != nil {
		return err
	}
	kid, err := c.RotateKeys(ctx)
	if err != nil {
		return err
	}
	return af.print(out, map[string]string{"kid": kid}, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "new signing key %s (published now, signs after the publish-ahead period)\n", kid)
	})
}

// personToken is the access token of the person helixctl login signed in
// (the credentials file of HELIX_CREDENTIALS or the config folder).
func personToken(ctx context.Context) (string, error) {
	path := os.Getenv("HELIX_CREDENTIALS")
	if path == "" {
		var err error
		if path, err = cliauth.DefaultPath(); err != nil {
			return "", err
		}
	}
	c, err := (&cliauth.Session{Path: path}).Current(ctx)
	if err != nil {
		if errors.Is(err, cliauth.ErrNotLoggedIn) {
			return "", errors.New("no admin token (--admin-token-file or HELIX_ADMIN_TOKEN) and nobody signed in (helixctl login, as a platform admin)")
		}
		return "", err
	}
	return c.AccessToken, nil
}
