package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/bench/internal/profiling"
	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/supervise"
)

// The client both servers get: the same scopes, audience and
// authentication method.
var (
	benchScopes   = []string{"models:simple:infer", "models:read"}
	benchAudience = "helixflow"
	// tokenScope is what every token request asks for.
	tokenScope = "models:simple:infer"
)

// helix is a running helix-authz with a client and an API key.
type helix struct {
	p                      *proc
	issuer                 string
	tokenURL, grpcAddr     string
	clientID, clientSecret string
	apiKey                 string
	pprofAddr              string
	admin                  *admin.Client
}

// startHelix starts helix-authz with its mails to smtp (mailpit): the
// people's API is on only with mail.
func startHelix(ctx context.Context, g *supervise.Group, bin, dsn, dir, smtp string, profile bool) (*helix, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	// Check takes the plan's rate-limit decision with its counters in
	// Redis, as the gateway runs it (deploy/local/gateway.yaml always
	// limits): a real Redis, started as the local stack starts its own.
	redis, err := stack.RedisSpec(filepath.Join(dir, "redis"), ports[5])
	if err != nil {
		return nil, err
	}
	if _, err := g.Start(ctx, redis); err != nil {
		return nil, err
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	adminAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	h := &helix{grpcAddr: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	issuer := "http://" + httpAddr
	h.issuer = issuer
	// A pepper turns the secret hashes into HMAC-SHA-256, as production
	// should run.
	pepper := filepath.Join(dir, "pepper")
	if err := os.WriteFile(pepper, []byte(randomHex(32)), 0o600); err != nil {
		return nil, err
	}
	// helix-authz reads the plans and the rate-limit settings of a
	// gateway config file: the client's plan, gold, is never reached, so
	// every Check is allowed after its Redis round trip. failure_mode
	// closed makes a Redis failure a failed Check, which ends the run;
	// the timeout is 1 s rather than the gateway's 100 ms because 64
	// callers on a loaded 2-core machine queue longer than that, and
	// this measures throughput, not the timeout policy.
	gatewayConfig := filepath.Join(dir, "gateway.yaml")
	const plans = "listener: {address: 127.0.0.1, port: 8443}\nauthz: {address: '127.0.0.1:9001'}\n" +
		"ratelimit: {timeout: 1s, failure_mode: closed, default_plan: gold}\nplans:\n  gold: {requests_per_second: 1000000}\n"
	if err := os.WriteFile(gatewayConfig, []byte(plans), 0o600); err != nil {
		return nil, err
	}
	adminToken := randomHex(32)
	env := []string{"HELIX_DATABASE_URL=" + dsn, "HELIX_AUTHZ_KEK=" + randomHex(32), "HELIX_ADMIN_TOKEN=" + adminToken}
	if profile {
		h.pprofAddr = fmt.Sprintf("127.0.0.1:%d", ports[4])
		env = append(env, profiling.AddrEnv+"="+h.pprofAddr)
	}
	h.p, err = g.Start(ctx, supervise.Spec{
		Name: "helix-authz", Path: bin, Env: env,
		Args: []string{"--gateway-config=" + gatewayConfig, "--redis-address=" + stack.Addr(ports[5]), "--issuer=" + issuer, "--audience=" + benchAudience,
			"--http-listen=" + httpAddr, "--grpc-listen=" + h.grpcAddr, "--admin-listen=" + adminAddr,
			fmt.Sprintf("--metrics-listen=127.0.0.1:%d", ports[3]),
			"--plaintext-loopback", "--secret-pepper-file=" + pepper, "--log-level=warn",
			// The per-source limit stays in place (its cost is measured) with
			// a rate no single load generator on loopback reaches.
			"--oauth-rate-limit=1e9", "--oauth-rate-burst=1000000000",
			// Mail to a loopback mailpit in plain SMTP (allowed to loopback
			// only); nothing measured sends mail.
			"--smtp-address=" + smtp, "--smtp-tls=none", "--mail-from=bench@example.test"},
		// The JWKS answers once the first signing key exists.
		Ready: httpReady(issuer + "/.well-known/jwks.json"),
	})
	if err != nil {
		return nil, err
	}
	h.tokenURL = issuer + "/oauth2/token"
	ac, err := admin.NewClient("http://"+adminAddr, adminToken, nil)
	if err != nil {
		return nil, err
	}
	h.admin = ac
	name, plan, models, aud := "bench", "gold", []string{"simple"}, []string{benchAudience}
	scopes := benchScopes
	c, err := ac.CreateClient(ctx, admin.ClientRequest{Name: &name, Scopes: &scopes, Models: &models, Audience: &aud, Plan: &plan})
	if err != nil {
		return nil, fmt.Errorf("helix-authz: create client: %w", err)
	}
	h.clientID, h.clientSecret = c.ClientID, c.ClientSecret
	k, err := ac.CreateAPIKey(ctx, admin.APIKeyRequest{ClientID: c.ClientID, Name: "bench"})
	if err != nil {
		return nil, fmt.Errorf("helix-authz: create API key: %w", err)
	}
	h.apiKey = k.Key
	return h, nil
}

// hydra is a running Ory Hydra (serve all --dev) with a client.
type hydra struct {
	p                      *proc
	tokenURL               string
	clientID, clientSecret string
	// secretHash is the scheme and parameters of the stored client-secret
	// hash, read from Hydra's table (the hash itself left out).
	secretHash string
	version    string
}

// startHydra starts Hydra on the database at dsn with a pool of conns
// connections (0: Hydra's default).
func startHydra(ctx context.Context, g *supervise.Group, bin, dsn string, conns int) (*hydra, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	pub, adm := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	// Configuration through Hydra's environment variables; everything not
	// named is Hydra's default (the client-secret hasher included).
	hydraDSN := dsn
	if conns > 0 {
		hydraDSN += fmt.Sprintf("&max_conns=%d&max_idle_conns=%d", conns, conns)
	}
	env := []string{
		"DSN=" + hydraDSN,
		"SECRETS_SYSTEM=" + randomHex(32),
		"URLS_SELF_ISSUER=http://" + pub + "/",
		"SERVE_PUBLIC_HOST=127.0.0.1", fmt.Sprintf("SERVE_PUBLIC_PORT=%d", ports[0]),
		"SERVE_ADMIN_HOST=127.0.0.1", fmt.Sprintf("SERVE_ADMIN_PORT=%d", ports[1]),
		"STRATEGIES_ACCESS_TOKEN=jwt",
		// helix-authz runs at warn too: no per-request log lines on either.
		"LOG_LEVEL=warn",
		"SQA_OPT_OUT=true",
	}
	out, err := runCmd(ctx, env, bin, "version")
	if err != nil {
		return nil, err
	}
	f := strings.Fields(benchdoc.FirstLine(out)) // "Version:    v2.3.0"
	hy := &hydra{version: "unknown"}
	if len(f) > 0 {
		hy.version = f[len(f)-1]
	}
	if _, err := runCmd(ctx, env, bin, "migrate", "sql", "up", "-e", "--yes"); err != nil {
		return nil, fmt.Errorf("hydra migrate: %w", err)
	}
	adminURL := "http://" + adm
	hy.p, err = g.Start(ctx, supervise.Spec{
		Name: "hydra", Path: bin, Env: env, Args: []string{"serve", "all", "--dev", "--sqa-opt-out"},
		Ready: httpReady(adminURL + "/health/ready"),
	})
	if err != nil {
		return nil, err
	}
	if err := hy.setup(ctx, adminURL, dsn); err != nil {
		return nil, err
	}
	hy.tokenURL = "http://" + pub + "/oauth2/token"
	return hy, nil
}

func (hy *hydra) setup(ctx context.Context, adminURL, dsn string) error {
	// Hydra signs access tokens RS256 with a 4096-bit key it makes on first
	// use; give it an ES256 key instead, so that both servers sign alike.
	if err := adminCall(ctx, http.MethodDelete, adminURL+"/admin/keys/hydra.jwt.access-token", nil, nil, http.StatusNoContent, http.StatusNotFound); err != nil {
		return err
	}
	if err := adminCall(ctx, http.MethodPost, adminURL+"/admin/keys/hydra.jwt.access-token",
		map[string]string{"alg": "ES256", "use": "sig", "kid": "bench-es256"}, nil, http.StatusCreated); err != nil {
		return err
	}
	// A secret as helix-authz makes them (256 bits, base64url).
	sec, err := secret.NewClientSecret()
	if err != nil {
		return err
	}
	var c struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := adminCall(ctx, http.MethodPost, adminURL+"/admin/clients", map[string]any{
		"client_name":                "bench",
		"client_secret":              sec,
		"grant_types":                []string{"client_credentials"},
		"response_types":             []string{"token"},
		"scope":                      strings.Join(benchScopes, " "),
		"audience":                   []string{benchAudience},
		"token_endpoint_auth_method": "client_secret_basic",
		"access_token_strategy":      "jwt",
	}, &c, http.StatusCreated); err != nil {
		return err
	}
	hy.clientID, hy.clientSecret = c.ClientID, sec
	// Which hash Hydra stored: its scheme and parameters only.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("hydra database: %w", err)
	}
	defer conn.Close(context.Background())
	var stored string
	if err := conn.QueryRow(ctx, "SELECT client_secret FROM hydra_client WHERE id = $1", c.ClientID).Scan(&stored); err != nil {
		return fmt.Errorf("hydra client secret hash: %w", err)
	}
	hy.secretHash = hashScheme(stored)
	return nil
}

// hashScheme keeps "$pbkdf2-sha256$i=25000,l=32" of a PHC string, or
// "$2a$10" of a bcrypt one.
func hashScheme(s string) string {
	parts := strings.Split(s, "$")
	switch {
	case len(parts) >= 3 && strings.HasPrefix(parts[1], "pbkdf2"):
		return "$" + parts[1] + "$" + parts[2]
	case len(parts) >= 3 && strings.HasPrefix(parts[1], "2"):
		return "$" + parts[1] + "$" + parts[2]
	}
	return "unknown"
}

func adminCall(ctx context.Context, method, url string, body, out any, want ...int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	for _, w := range want {
		if resp.StatusCode == w {
			if out != nil && len(data) > 0 {
				return json.Unmarshal(data, out)
			}
			return nil
		}
	}
	return fmt.Errorf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, data)
}

// noop is the no-op Authorization server in a child process.
type noop struct {
	p    *proc
	addr string
}

func startNoop(ctx context.Context, g *supervise.Group) (*noop, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	n := &noop{addr: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cl := authv3.NewAuthorizationClient(conn)
	n.p, err = g.Start(ctx, supervise.Spec{
		Name: "noop", Path: self, Args: []string{"--serve-noop", n.addr},
		// Ready when a Check answers.
		Ready: func(ctx context.Context) error {
			_, err := cl.Check(ctx, &authv3.CheckRequest{})
			return err
		},
		ReadyTimeout: 30 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}
