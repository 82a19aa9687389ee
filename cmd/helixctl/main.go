// Command helixctl administers HelixFlow: database migrations, OAuth2
// clients, API keys and signing keys; the local development PKI.
//
//	helixctl migrate up|down|status          [--database-url URL]
//	helixctl clients create|list|get|update|delete|rotate-secret ...
//	helixctl apikeys create|list|revoke ...
//	helixctl keys rotate
//	helixctl users list|get|set-admin|export|erase ...
//	helixctl audit list|verify|export ...
//	helixctl orgs list|get|create|policy ...
//	helixctl status                          [--xds-status-url URL]
//	helixctl login [--issuer URL] | logout | whoami
//	helixctl models list|get NAME            [--json] [--client-id ID]
//	helixctl alerts list|silence             [--alertmanager-url URL]
//	helixctl rollout start|status|pause|resume|abort|release ...
//	helixctl pki init                        [--dir .helix/pki] [--force]
//
// The admin API is found through --admin-url or HELIX_ADMIN_URL, its token
// in --admin-token-file or HELIX_ADMIN_TOKEN (never a flag's value: the
// command line is visible to every user), and sent over plain http only to
// a loopback address. Every admin call names the person acting in the
// Helix-Operator header: --operator, HELIX_OPERATOR or the OS user@host. The database is found through HELIX_DATABASE_URL, or
// --database-url when the URL holds no password. --output json prints
// machine-readable results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/helixflow/helixflow/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "helixctl:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "helixctl:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// usage follows "usage: " in the help and in usage errors.
const usage = `helixctl <command> <subcommand> [flags]

commands:
  migrate  up|down|status                     apply or inspect database migrations
  clients  create|list|get|update|delete|rotate-secret
  apikeys  create|list|revoke
  keys     rotate                             create the next token-signing key
  users    list|get|set-admin                 people's accounts; the platform-admin flag
  users    export|erase ID                    everything held about a person (JSON); GDPR erasure
  audit    list|verify|export                 the audit trail; check its hash chain; JSON Lines
  orgs     list|get|create|policy             organizations and the limits their members create within
  pki      init                               create the local development CA and certificates
  status                                      helix-xds: config versions, connected Envoys, rejected configs
  login    [--issuer URL]                     sign in as a person (browser, loopback redirect + PKCE)
  logout                                      end that sign-in and delete its tokens
  whoami                                      who is signed in
  models   list|get NAME                      the model catalogue as you (or --client-id, HELIX_API_KEY) see it
  usage    [--org ID]                         the usage ledger: an organization's, or your client's own (--csv)
  alerts   list|silence                       Alertmanager's alerts; silence some
  rollout  start|status|pause|resume|abort|release   progressive, SLO-gated rollouts of a model's version or pool

Run "helixctl <command> <subcommand> -h" for the flags of one;
"helixctl --version" prints the version.`

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 1 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			_, err := fmt.Fprintf(out, "usage: %s\n", usage)
			return err
		case "-version", "--version", "version":
			_, err := fmt.Fprintln(out, version.String("helixctl"))
			return err
		}
	}
	if len(args) >= 1 {
		switch args[0] {
		case "status":
			return runStatus(ctx, args[1:], out)
		case "login":
			return runLogin(ctx, args[1:], out)
		case "logout":
			return runLogout(ctx, args[1:], out)
		case "whoami":
			return runWhoami(ctx, args[1:], out)
		case "usage":
			return runUsage(ctx, args[1:], out)
		}
	}
	if len(args) < 2 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	cmd, sub, rest := args[0], args[1], args[2:]
	switch cmd {
	case "migrate":
		return runMigrate(ctx, sub, rest, out)
	case "clients":
		return runClients(ctx, sub, rest, out)
	case "apikeys":
		return runAPIKeys(ctx, sub, rest, out)
	case "keys":
		return runKeys(ctx, sub, rest, out)
	case "users":
		if sub == "export" || sub == "erase" {
			return runUsersPrivacy(ctx, sub, rest, out)
		}
		return runUsers(ctx, sub, rest, out)
	case "audit":
		return runAudit(ctx, sub, rest, out)
	case "orgs":
		return runOrgs(ctx, sub, rest, out)
	case "pki":
		return runPKI(ctx, sub, rest, out)
	case "models":
		return runModels(ctx, sub, rest, out)
	case "alerts":
		return runAlerts(ctx, sub, rest, out)
	case "rollout":
		return runRollout(ctx, sub, rest, out)
	}
	return fmt.Errorf("%w: unknown command %q\nusage: %s", errUsage, cmd, usage)
}

// listFlag is a repeatable flag that also splits on commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// secretFlags are flags that took a secret as their value, and what to use
// instead: a value on the command line is visible to every user of the
// machine (ps, /proc) and kept in shell history.
var secretFlags = map[string]string{
	"admin-token":   "--admin-token-file FILE or HELIX_ADMIN_TOKEN",
	"client-secret": "--client-secret-file FILE or HELIX_CLIENT_SECRET",
	"api-key":       "--api-key-file FILE or HELIX_API_KEY",
}

// refuseSecretFlags refuses secretFlags before the flag package sees them:
// its error would repeat the value.
func refuseSecretFlags(args []string) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if use, ok := secretFlags[name]; ok && strings.HasPrefix(a, "-") {
			return fmt.Errorf("%w: --%s is not accepted (a secret on the command line is visible to every user of the machine); use %s", errUsage, name, use)
		}
	}
	return nil
}

// parse parses flags, which may come before or after the positional
// arguments, and wants exactly nargs positional arguments (nargs < 0: at
// most -nargs).
func parse(fs *flag.FlagSet, args []string, nargs int, what string) ([]string, error) {
	if err := refuseSecretFlags(args); err != nil {
		return nil, err
	}
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(os.Stderr)
				fs.Usage()
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != nargs && (nargs >= 0 || len(pos) > -nargs) {
		return nil, fmt.Errorf("%w: %s", errUsage, what)
	}
	return pos, nil
}
