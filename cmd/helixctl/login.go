package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/helixflow/helixflow/internal/cliauth"
)

// personFlags are the flags of login, logout and whoami.
type personFlags struct {
	issuer, caFile, path, output string
}

func (p *personFlags) register(fs *flag.FlagSet, issuer bool) {
	if issuer {
		fs.StringVar(&p.issuer, "issuer", os.Getenv("HELIX_ISSUER"), "helix-authz's issuer URL (env HELIX_ISSUER)")
		fs.StringVar(&p.caFile, "ca-file", os.Getenv("HELIX_CA_FILE"), "CA of helix-authz's certificate (env HELIX_CA_FILE; default: the system roots)")
	}
	fs.StringVar(&p.path, "credentials", os.Getenv("HELIX_CREDENTIALS"),
		"credentials file (env HELIX_CREDENTIALS; default: helixflow/credentials.json in your config folder)")
	fs.StringVar(&p.output, "output", "table", "table or json")
}

func (p *personFlags) session() (*cliauth.Session, error) {
	if p.output != "table" && p.output != "json" {
		return nil, fmt.Errorf("%w: --output %q: want table or json", errUsage, p.output)
	}
	if p.path == "" {
		path, err := cliauth.DefaultPath()
		if err != nil {
			return nil, err
		}
		p.path = path
	}
	return &cliauth.Session{Path: p.path}, nil
}

// runLogin signs a person in through the browser (loopback redirect with
// PKCE) and keeps the tokens in the credentials file.
func runLogin(ctx context.Context, args []string, out io.Writer) error {
	var pf personFlags
	var noBrowser bool
	var scopes listFlag
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	pf.register(fs, true)
	fs.BoolVar(&noBrowser, "no-browser", false, "print the sign-in URL only; open it in a browser on this machine")
	fs.Var(&scopes, "scope", "scopes to ask for (default: account, models:infer, models:read, and helix:admin if you are a platform admin)")
	if _, err := parse(fs, args, 0, "login takes no argument"); err != nil {
		return err
	}
	s, err := pf.session()
	if err != nil {
		return err
	}
	if pf.issuer == "" {
		return fmt.Errorf("%w: --issuer (or HELIX_ISSUER) is required", errUsage)
	}
	hc, err := cliauth.HTTPClient(pf.caFile)
	if err != nil {
		return err
	}
	l := &cliauth.Login{Issuer: pf.issuer, HTTP: hc, Scopes: scopes, Prompt: os.Stderr}
	if !noBrowser {
		l.Open = openBrowser
	}
	c, err := l.Run(ctx)
	if err != nil {
		return err
	}
	c.CAFile = pf.caFile
	if err := cliauth.Save(s.Path, c); err != nil {
		return err
	}
	return printPerson(ctx, &pf, s, out)
}

// openBrowser hands url to the desktop's opener; the URL is an argument,
// never a shell word.
func openBrowser(url string) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	cmd := exec.Command(name, url)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// runLogout revokes the session and deletes the credentials file.
func runLogout(ctx context.Context, args []string, out io.Writer) error {
	var pf personFlags
	fs := flag.NewFlagSet("logout", flag.ContinueOnError)
	pf.register(fs, false)
	if _, err := parse(fs, args, 0, "logout takes no argument"); err != nil {
		return err
	}
	s, err := pf.session()
	if err != nil {
		return err
	}
	if err := s.Logout(ctx); err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, "logged out")
	return err
}

// runWhoami prints the signed-in person (refreshing the token if needed).
func runWhoami(ctx context.Context, args []string, out io.Writer) error {
	var pf personFlags
	fs := flag.NewFlagSet("whoami", flag.ContinueOnError)
	pf.register(fs, false)
	if _, err := parse(fs, args, 0, "whoami takes no argument"); err != nil {
		return err
	}
	s, err := pf.session()
	if err != nil {
		return err
	}
	return printPerson(ctx, &pf, s, out)
}

// person is what whoami prints: the account (GET /api/v1/account) and the
// token's facts.
type person struct {
	ID            string    `json:"id"`
	Email         string    `json:"email"`
	DisplayName   string    `json:"display_name"`
	PlatformAdmin bool      `json:"platform_admin"`
	Issuer        string    `json:"issuer"`
	Scope         string    `json:"scope"`
	ExpiresAt     time.Time `json:"access_token_expires_at"`
}

func printPerson(ctx context.Context, pf *personFlags, s *cliauth.Session, out io.Writer) error {
	c, err := s.Current(ctx)
	if err != nil {
		return err
	}
	hc, err := cliauth.HTTPClient(c.CAFile)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Issuer+"/api/v1/account", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("whoami: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("whoami: %w", cliauth.ErrNotLoggedIn)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("whoami: GET /api/v1/account: HTTP %d", resp.StatusCode)
	}
	var p person
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&p); err != nil {
		return fmt.Errorf("whoami: %w", err)
	}
	p.Issuer, p.Scope, p.ExpiresAt = c.Issuer, c.Scope, c.ExpiresAt
	if pf.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "email\t%s\nid\t%s\nname\t%s\nplatform admin\t%v\nissuer\t%s\nscope\t%s\ntoken expires\t%s\n",
		p.Email, p.ID, p.DisplayName, p.PlatformAdmin, p.Issuer, p.Scope, p.ExpiresAt.Local().Format(time.RFC3339))
	return tw.Flush()
}
