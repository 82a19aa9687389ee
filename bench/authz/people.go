package main

// People's side of helix-authz (issue 14): logins, whose cost is the
// argon2id hash at the production parameters, and refresh-token grants,
// measured beside client-credentials grants on the same server in the
// same run.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/extauthz/password"
	"github.com/helixflow/helixflow/internal/mailpitbin"
	"github.com/helixflow/helixflow/internal/supervise"
)

const (
	// peopleClient is the first-party public client helix-authz ensures at
	// start (helixctl's loopback redirect with PKCE, RFC 8252).
	peopleClient   = "helixctl"
	peopleRedirect = "http://127.0.0.1:9/callback"
	peopleScope    = "account models:read"
	// benchPassword is every bench user's password.
	benchPassword = "bench-Violet-harbor-2718"
	// sessionCookie is helix-authz's browser session cookie.
	sessionCookie = "__Host-helix_session"
)

// startMailpit starts mailpit as the tests and `make run` do: without
// --smtp-address helix-authz keeps the people's API off. Returns its SMTP
// address.
func startMailpit(ctx context.Context, g *supervise.Group, dir string) (string, error) {
	bin, err := mailpitbin.Find(".")
	if err != nil {
		return "", err
	}
	ports, err := freePorts(2)
	if err != nil {
		return "", err
	}
	smtp, ui := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	_, err = g.Start(ctx, supervise.Spec{
		Name: "mailpit", Path: bin, Args: mailpitbin.Args(smtp, ui, filepath.Join(dir, "mailpit.db")),
		Ready: httpReady("http://" + ui + "/readyz"),
	})
	return smtp, err
}

// createUsers makes n verified users with benchPassword hashed at
// helix-authz's default parameters (password.Minimum), straight into its
// database: sign-up and verification are not what is measured, and their
// mails would wait on the per-address limit. Returns their addresses.
func createUsers(ctx context.Context, dsn string, n int) ([]string, error) {
	h, err := password.New(password.Config{})
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	emails := make([]string, n)
	for i := range emails {
		emails[i] = fmt.Sprintf("bench-%d-%s@example.test", i, randomHex(4))
		phc, err := h.Hash(ctx, benchPassword)
		if err != nil {
			return nil, err
		}
		if _, err := conn.Exec(ctx, `INSERT INTO users (email, email_verified_at, password_hash, display_name)
			VALUES ($1, now(), $2, 'bench')`, emails[i], phc); err != nil {
			return nil, fmt.Errorf("create bench user: %w", err)
		}
	}
	return emails, nil
}

// peopleHTTP makes the requests of one kind, with a keep-alive
// connection per caller and no redirects followed.
func peopleHTTP(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute, DisableCompression: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// loginClient logs the bench users in through POST /api/v1/login, each
// call as a user no other call is using (a pool as large as the callers).
type loginClient struct {
	url   string
	hc    *http.Client
	users chan string
}

func newLoginClient(issuer string, users []string) *loginClient {
	l := &loginClient{url: issuer + "/api/v1/login", hc: peopleHTTP(len(users)), users: make(chan string, len(users))}
	for _, u := range users {
		l.users <- u
	}
	return l
}

// login answers the session cookie's value.
func (l *loginClient) login(ctx context.Context, email string) (string, error) {
	body, _ := json.Marshal(map[string]string{"email": email, "password": benchPassword})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(data, []byte(`"csrf_token"`)) {
		return "", fmt.Errorf("login: HTTP %d: %.200s", resp.StatusCode, data)
	}
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			return c.Value, nil
		}
	}
	return "", errors.New("login: no session cookie")
}

func (l *loginClient) op(ctx context.Context) error {
	email := <-l.users
	defer func() { l.users <- email }()
	_, err := l.login(ctx, email)
	return err
}

// refreshClient runs refresh-token grants, each call on a chain no other
// call is using: every grant rotates the chain's refresh token.
type refreshClient struct {
	url    string
	hc     *http.Client
	chains chan *string
}

// newRefreshClient makes n chains: n users log in, authorize helixctl
// with PKCE S256 and exchange the code.
func newRefreshClient(ctx context.Context, issuer string, users []string, n int) (*refreshClient, error) {
	lc := newLoginClient(issuer, users)
	r := &refreshClient{url: issuer + "/oauth2/token", hc: peopleHTTP(n), chains: make(chan *string, n)}
	for i := range n {
		cookie, err := lc.login(ctx, users[i%len(users)])
		if err != nil {
			return nil, err
		}
		rt, err := codeGrant(ctx, r.hc, issuer, cookie)
		if err != nil {
			return nil, err
		}
		r.chains <- &rt
	}
	return r, nil
}

// codeGrant is the authorization code grant of a logged-in browser:
// /oauth2/authorize answers with a redirect carrying the code, which is
// exchanged for tokens. Returns the refresh token.
func codeGrant(ctx context.Context, hc *http.Client, issuer, cookie string) (string, error) {
	verifier := randomHex(32) // 64 characters of RFC 7636's alphabet
	sum := sha256.Sum256([]byte(verifier))
	state := randomHex(8)
	q := url.Values{"response_type": {"code"}, "client_id": {peopleClient}, "redirect_uri": {peopleRedirect},
		"scope": {peopleScope}, "state": {state}, "code_challenge_method": {"S256"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/oauth2/authorize?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode/100 != 3 || !strings.HasPrefix(loc.String(), peopleRedirect) ||
		loc.Query().Get("code") == "" || loc.Query().Get("state") != state {
		return "", fmt.Errorf("authorize: HTTP %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	tr, err := tokenPost(ctx, hc, issuer+"/oauth2/token", url.Values{"grant_type": {"authorization_code"},
		"code": {loc.Query().Get("code")}, "redirect_uri": {peopleRedirect}, "client_id": {peopleClient},
		"code_verifier": {verifier}})
	if err != nil {
		return "", fmt.Errorf("code exchange: %w", err)
	}
	return tr.RefreshToken, nil
}

type grantResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func tokenPost(ctx context.Context, hc *http.Client, tokenURL string, form url.Values) (*grantResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("token endpoint: HTTP %d: %.200s", resp.StatusCode, data)
	}
	var tr grantResponse
	if err := json.Unmarshal(data, &tr); err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	if tr.AccessToken == "" || tr.RefreshToken == "" {
		return nil, fmt.Errorf("token endpoint: no access or refresh token in %.200s", data)
	}
	return &tr, nil
}

func (r *refreshClient) op(ctx context.Context) error {
	rt := <-r.chains
	defer func() { r.chains <- rt }()
	tr, err := tokenPost(ctx, r.hc, r.url, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {*rt},
		"client_id": {peopleClient}})
	if err != nil {
		return err
	}
	*rt = tr.RefreshToken
	return nil
}

// loginCallers is the concurrency for the login goal.
const loginCallers = 8

// The two kinds of grant measured side by side.
const (
	grantRefresh = "refresh_token"
	grantClient  = "client_credentials"
)

// measurePeople is the people's section: logins at 1 and loginCallers
// callers, then refresh-token grants beside client-credentials grants at
// the token section's callers, on the same helix-authz.
func measurePeople(ctx context.Context, o *options, out *outcome, hx *helix, hxTok *tokenClient, dsn string,
	pgCPU func() time.Duration) error {
	chains := o.tokenCallers[len(o.tokenCallers)-1]
	logf("making %d users (argon2id %s) and %d refresh-token chains", max(loginCallers, chains), password.Minimum, chains)
	users, err := createUsers(ctx, dsn, max(loginCallers, chains))
	if err != nil {
		return err
	}
	lc := newLoginClient(hx.issuer, users[:loginCallers])
	rc, err := newRefreshClient(ctx, hx.issuer, users, chains)
	if err != nil {
		return fmt.Errorf("refresh-token chains: %w\n%s", err, hx.p.Tail(tailLines))
	}
	pid := hx.p.PID()
	for _, c := range o.loginCallers {
		pt := &point{what: "login", callers: c, servers: []string{"helix-authz"}}
		if err := measure(ctx, o, pt, map[string]op{"helix-authz": lc.op}, map[string]int{"helix-authz": pid}, pgCPU, "", ""); err != nil {
			return fmt.Errorf("%w\n%s", err, hx.p.Tail(tailLines))
		}
		out.logins = append(out.logins, pt)
	}
	ops := map[string]op{grantRefresh: rc.op, grantClient: hxTok.op}
	pids := map[string]int{grantRefresh: pid, grantClient: pid}
	for _, c := range o.tokenCallers {
		pt := &point{what: "grant", callers: c, servers: []string{grantRefresh, grantClient}}
		if err := measure(ctx, o, pt, ops, pids, pgCPU, "", ""); err != nil {
			return fmt.Errorf("%w\n%s", err, hx.p.Tail(tailLines))
		}
		out.grants = append(out.grants, pt)
	}
	return nil
}
