// Command bench-authz is `make bench-authz`: in one run on this machine it
// measures helix-authz's Envoy Check service beside a no-op Authorization
// server (the floor), its token endpoint beside Ory Hydra v2.3.0 (the
// peer), and the people's side: logins (argon2id at the production
// parameters) and refresh-token grants beside client-credentials grants;
// and writes the figures into docs/benchmarks.md.
//
//	go run ./bench/authz [--quick] [--only people] [--write docs/benchmarks.md] [--profile DIR]
//
// Every server is started here on 127.0.0.1 free ports, under
// internal/supervise, on one private Postgres (internal/pgtest), and
// stopped at the end. Hydra is the binary
// `make bench-authz` builds from bench/hydra into .tools/; mailpit (the
// people's API is off without mail) the one `make deps` builds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/bench/internal/profiling"
	"github.com/helixflow/helixflow/bench/internal/sysinfo"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/supervise"
)

const hydraVersion = "v2.3.0"

type options struct {
	quick        bool
	write        string
	profile      string
	helixBin     string
	hydraBin     string
	duration     time.Duration
	warmup       time.Duration
	rounds       int
	hydraConns   int
	keep         bool
	only         string
	checkCallers []int
	tokenCallers []int
	loginCallers []int
	args         []string
}

// onlyPeople: --only people measures the logins and grants alone (no
// Hydra, no no-op server) and writes their section only.
const onlyPeople = "people"

func main() {
	var o options
	var serveNoopAddr string
	fs := flag.NewFlagSet("bench-authz", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "smoke run: short windows, one round (figures not worth writing down)")
	fs.StringVar(&o.write, "write", "", "write the results into this Markdown file, between the bench-authz markers")
	fs.StringVar(&o.profile, "profile", "", "folder for CPU profiles of helix-authz (built with a pprof listener through `go build -overlay`, bench only) at the highest concurrency")
	fs.StringVar(&o.helixBin, "helix-authz", "bin/helix-authz", "helix-authz binary (make build)")
	fs.StringVar(&o.hydraBin, "hydra", ".tools/hydra-"+hydraVersion, "Ory Hydra binary (make bench-authz builds it from bench/hydra)")
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "length of one measured window")
	fs.IntVar(&o.rounds, "rounds", 8, "windows per server and point, taken in turn with the other server")
	fs.IntVar(&o.hydraConns, "hydra-max-conns", 32, "Hydra's database pool size (its DSN max_conns and max_idle_conns); 0 keeps Hydra's default, 2x the cores")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder (server logs, Postgres) and say where it is")
	fs.StringVar(&o.only, "only", "", `"people": only the logins and the refresh vs client-credentials grants (their section alone is written)`)
	fs.StringVar(&serveNoopAddr, "serve-noop", "", "internal: serve the no-op Authorization server on this address")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if serveNoopAddr != "" {
		if err := serveNoop(ctx, serveNoopAddr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	o.warmup = time.Second
	if o.quick {
		o.duration, o.rounds, o.warmup = time.Second, 1, 300*time.Millisecond
	}
	o.checkCallers, o.tokenCallers, o.loginCallers = []int{1, 64}, []int{1, 16}, []int{1, loginCallers}
	o.args = os.Args[1:]
	if err := validate(&o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-authz:", err)
		os.Exit(2)
	}
	if err := run(ctx, &o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-authz:", err)
		os.Exit(1)
	}
}

func validate(o *options) error {
	if o.write != "" && (o.quick || o.profile != "") {
		return errors.New("--write wants a full run: not with --quick or --profile (the profiled binary is not the product's)")
	}
	if o.rounds < 1 || o.duration < 100*time.Millisecond {
		return errors.New("--rounds must be >= 1 and --duration >= 100ms")
	}
	if o.only != "" && o.only != onlyPeople {
		return fmt.Errorf("--only %q: the one choice is %q", o.only, onlyPeople)
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	bins := []struct{ path, hint string }{{o.helixBin, "run `make build`"}}
	if o.only != onlyPeople {
		bins = append(bins, struct{ path, hint string }{o.hydraBin, "run `make bench-authz`, which builds it from bench/hydra"})
	}
	for _, b := range bins {
		if _, err := os.Stat(b.path); err != nil {
			return fmt.Errorf("%s is missing: %s", b.path, b.hint)
		}
	}
	return nil
}

// point is one row pair: a server measured at some concurrency.
type point struct {
	what    string // "JWT", "API key", "token"
	callers int
	servers []string
	results map[string]*sample
}

type outcome struct {
	started, finished time.Time
	before, after     [3]float64
	machine           sysinfo.Machine
	hydraVersion      string
	hydraHash         string
	helixTokenHeader  map[string]any
	hydraTokenHeader  map[string]any
	postgres          string
	checks, tokens    []*point
	logins, grants    []*point
	profiles          []string
}

func run(ctx context.Context, o *options) (err error) {
	out := &outcome{started: time.Now().UTC(), before: sysinfo.LoadAvg(), machine: sysinfo.ReadMachine()}
	logf("load average before: %.2f %.2f %.2f", out.before[0], out.before[1], out.before[2])

	tmp, err := os.MkdirTemp("", "bench-authz-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			logf("kept %s", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()
	// Postgres runs as the postgres user when we are root: it must reach
	// its folder.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}

	helixBin := o.helixBin
	if o.profile != "" {
		logf("building .tools/helix-authz-pprof (helix-authz with a pprof listener)")
		if helixBin, err = profiling.BuildAuthz(ctx, ".", tmp); err != nil {
			return err
		}
	}

	logf("starting Postgres")
	pg, err := pgtest.StartProcess(filepath.Join(tmp, "pg"))
	if err != nil {
		return err
	}
	defer func() { _ = pg.Kill() }()
	out.postgres = postgresVersion(ctx, pg.DSN())
	pgCPU := postgresCPU(filepath.Join(pg.Dir(), "data"))
	helixDSN, err := pgtest.CreateDatabase(ctx, pg.DSN(), "helix_authz")
	if err != nil {
		return err
	}
	logf("starting mailpit and helix-authz")
	// Their logs go into tmp; Close stops them newest first.
	g, err := supervise.New(supervise.Options{LogDir: tmp})
	if err != nil {
		return err
	}
	defer g.Close()
	smtp, err := startMailpit(ctx, g, tmp)
	if err != nil {
		return err
	}
	hx, err := startHelix(ctx, g, helixBin, helixDSN, tmp, smtp, o.profile != "")
	if err != nil {
		return err
	}
	maxTok := o.tokenCallers[len(o.tokenCallers)-1]
	hxTok := newTokenClient(hx.tokenURL, hx.clientID, hx.clientSecret, maxTok)
	jwt, err := firstToken(ctx, hx, hxTok)
	if err != nil {
		return fmt.Errorf("helix-authz token: %w\n%s", err, hx.p.Tail(tailLines))
	}
	if out.helixTokenHeader, err = jwtHeader(jwt.AccessToken); err != nil {
		return fmt.Errorf("helix-authz token: %w", err)
	}
	if o.only != onlyPeople {
		if err := measureServices(ctx, o, out, g, pg.DSN(), hx, hxTok, jwt, pgCPU); err != nil {
			return err
		}
	}
	if err := measurePeople(ctx, o, out, hx, hxTok, helixDSN, pgCPU); err != nil {
		return err
	}

	out.after, out.finished = sysinfo.LoadAvg(), time.Now().UTC()
	logf("load average after: %.2f %.2f %.2f", out.after[0], out.after[1], out.after[2])
	sections := []struct{ begin, end, text string }{{peopleBegin, peopleEnd, peopleReport(o, out)}}
	if o.only != onlyPeople {
		sections = append([]struct{ begin, end, text string }{{beginMarker, endMarker, report(o, out)}}, sections...)
	}
	for _, sec := range sections {
		fmt.Println(sec.text)
		if o.write != "" {
			if err := benchdoc.WriteSection(o.write, sec.begin, sec.end, sec.text); err != nil {
				return err
			}
		}
	}
	if o.write != "" {
		logf("wrote %s", o.write)
	}
	for _, p := range out.profiles {
		logf("profile: go tool pprof -top %s %s", helixBin, p)
	}
	return nil
}

// measureServices is the Check and token sections: helix-authz's Check
// beside the no-op server, its client-credentials grants beside Hydra's.
func measureServices(ctx context.Context, o *options, out *outcome, g *supervise.Group, pgDSN string, hx *helix,
	hxTok *tokenClient, jwt *tokenResponse, pgCPU func() time.Duration) error {
	hydraDSN, err := pgtest.CreateDatabase(ctx, pgDSN, "hydra")
	if err != nil {
		return err
	}
	logf("starting Ory Hydra %s and the no-op server", hydraVersion)
	hy, err := startHydra(ctx, g, o.hydraBin, hydraDSN, o.hydraConns)
	if err != nil {
		return err
	}
	out.hydraVersion, out.hydraHash = hy.version, hy.secretHash
	nop, err := startNoop(ctx, g)
	if err != nil {
		return err
	}

	// One token from each, to check that both answer the same request with
	// a JWT; helix-authz's is the one the Check runs present.
	maxTok := o.tokenCallers[len(o.tokenCallers)-1]
	hyTok := newTokenClient(hy.tokenURL, hy.clientID, hy.clientSecret, maxTok)
	hyJWT, err := hyTok.token(ctx)
	if err != nil {
		return fmt.Errorf("hydra token: %w\n%s", err, hy.p.Tail(tailLines))
	}
	if out.hydraTokenHeader, err = jwtHeader(hyJWT.AccessToken); err != nil {
		return fmt.Errorf("hydra token (strategies.access_token=jwt expected): %w", err)
	}
	if out.hydraTokenHeader["alg"] != "ES256" || out.helixTokenHeader["alg"] != "ES256" {
		return fmt.Errorf("want ES256 tokens from both, got %v from helix-authz and %v from Hydra", out.helixTokenHeader["alg"], out.hydraTokenHeader["alg"])
	}

	// Check: one HTTP/2 connection to each server, shared by all callers,
	// as Envoy's ext_authz cluster would hold.
	conns := map[string]*grpc.ClientConn{}
	pids := map[string]int{"helix-authz": hx.p.PID(), "no-op": nop.p.PID()}
	for name, addr := range map[string]string{"helix-authz": hx.grpcAddr, "no-op": nop.addr} {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer c.Close()
		conns[name] = c
	}
	creds := []struct {
		name    string
		headers map[string]string
	}{
		{"JWT", map[string]string{"authorization": "Bearer " + jwt.AccessToken}},
		{"API key", map[string]string{"x-api-key": hx.apiKey}},
	}
	for _, cred := range creds {
		req, err := inferCheckRequest(cred.headers)
		if err != nil {
			return err
		}
		ops := map[string]op{}
		for name, c := range conns {
			ops[name] = checkOp(authv3.NewAuthorizationClient(c), req)
		}
		for _, c := range o.checkCallers {
			pt := &point{what: cred.name, callers: c, servers: []string{"helix-authz", "no-op"}}
			prof := ""
			if o.profile != "" && c == o.checkCallers[len(o.checkCallers)-1] {
				prof = filepath.Join(o.profile, "check-"+strings.ReplaceAll(strings.ToLower(cred.name), " ", "")+fmt.Sprintf("-c%d.pprof", c))
			}
			if err := measure(ctx, o, pt, ops, pids, nil, hx.pprofAddr, prof); err != nil {
				return err
			}
			out.checks = append(out.checks, pt)
			if prof != "" {
				out.profiles = append(out.profiles, prof)
			}
		}
	}

	tokPIDs := map[string]int{"helix-authz": hx.p.PID(), "Hydra": hy.p.PID()}
	tokOps := map[string]op{"helix-authz": hxTok.op, "Hydra": hyTok.op}
	for _, c := range o.tokenCallers {
		pt := &point{what: "token", callers: c, servers: []string{"helix-authz", "Hydra"}}
		prof := ""
		if o.profile != "" && c == maxTok {
			prof = filepath.Join(o.profile, fmt.Sprintf("token-c%d.pprof", c))
		}
		if err := measure(ctx, o, pt, tokOps, tokPIDs, pgCPU, hx.pprofAddr, prof); err != nil {
			return err
		}
		out.tokens = append(out.tokens, pt)
		if prof != "" {
			out.profiles = append(out.profiles, prof)
		}
	}
	return nil
}

// firstToken gets helix-authz's first token. helix-authz sometimes starts
// without a signing key: its first rotation can retire the key it has
// just made, when the change notification of that key reloads the key set
// before the rotation retires the keys it knew (extauthz/keys Rotate),
// and then no key signs until the next maintenance tick (up to a minute).
// After 2 s of 503s this rotates once through the admin API, as an
// operator would (`helixctl keys rotate`), and says so loudly.
func firstToken(ctx context.Context, hx *helix, tc *tokenClient) (*tokenResponse, error) {
	start := time.Now()
	rotated := false
	for {
		tr, err := tc.token(ctx)
		if err == nil {
			return tr, nil
		}
		if !strings.Contains(err.Error(), "HTTP 503") || time.Since(start) > 20*time.Second {
			return nil, err
		}
		if !rotated && time.Since(start) > 2*time.Second {
			logf("WARNING: helix-authz answers 503 to token requests (%v); its log:\n%s\nrotating its signing key through the admin API", err, hx.p.Tail(tailLines))
			if _, err := hx.admin.RotateKeys(ctx); err != nil {
				return nil, fmt.Errorf("rotate signing key: %w", err)
			}
			rotated = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// measure runs pt: a warm-up of each server, then o.rounds windows each,
// servers taken in turn (order reversed every round) so that background
// load falls on all alike. A "server" is one kind of request: two may be
// the same process (pids). dbCPU, when set, measures Postgres too. With
// prof set, a CPU profile of helix-authz is taken over its first window.
func measure(ctx context.Context, o *options, pt *point, ops map[string]op, pids map[string]int,
	dbCPU func() time.Duration, pprofAddr, prof string) error {
	pt.results = map[string]*sample{}
	for _, s := range pt.servers {
		if _, err := runLoad(ctx, pt.callers, o.warmup, pids[s], ops[s]); err != nil {
			return err
		}
		pt.results[s] = &sample{}
	}
	for r := range o.rounds {
		order := slices.Clone(pt.servers)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			var profDone chan error
			if prof != "" && r == 0 && s == "helix-authz" {
				profDone = make(chan error, 1)
				go func() { profDone <- profiling.Capture(ctx, pprofAddr, o.duration, prof) }()
			}
			db0 := time.Duration(0)
			if dbCPU != nil {
				db0 = dbCPU()
			}
			res, err := runLoad(ctx, pt.callers, o.duration, pids[s], ops[s])
			if err != nil {
				return err
			}
			if dbCPU != nil {
				res.dbCPU = dbCPU() - db0
			}
			if profDone != nil {
				if err := <-profDone; err != nil {
					return err
				}
			}
			pt.results[s].add(res)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	for _, s := range pt.servers {
		res := pt.results[s]
		if res.ok == 0 || res.errs*100 > res.ok {
			return fmt.Errorf("%s %s at %d callers: %d ok, %d failed; first error: %v", s, pt.what, pt.callers, res.ok, res.errs, res.firstErr)
		}
		logf("%-8s c=%-3d %-12s %9.0f/s  p50 %7.0f us  p99 %7.0f us  errors %d",
			pt.what, pt.callers, s, res.rate(), us(res.quantile(0.5)), us(res.quantile(0.99)), res.errs)
	}
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
