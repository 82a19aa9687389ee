// Package cliauth signs a person in to helix-authz from the command line
// (helixctl login, logout, whoami) and keeps their tokens.
//
// fosite v0.49.0 has no device authorization grant (RFC 8628), so login is
// the authorization-code grant with PKCE S256 over a loopback redirect
// (RFC 8252 7.3), as gh and gcloud do: a listener on 127.0.0.1 with a port
// the system picks, the browser sent to /oauth2/authorize, one callback
// whose state must match, then the code exchanged for tokens by the public
// client "helixctl" (no secret: PKCE proves the grant).
//
// The tokens live in credentials.json under os.UserConfigDir()/helixflow
// (folder 0700, file 0600, replaced atomically). The access token is
// refreshed when it has expired, under an exclusive lock on the file:
// refresh tokens rotate, and two processes refreshing with the same one
// would look like a replay and end the session.
package cliauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/helixflow/helixflow/internal/atomicfile"
	"github.com/helixflow/helixflow/internal/netaddr"
	"github.com/helixflow/helixflow/internal/wire"
)

// ClientID is the first-party public client helix-authz ensures.
const ClientID = wire.HelixctlClientID

// DefaultScopes are what login asks for; helix-authz grants helix:admin
// to platform admins only and leaves it out for everyone else.
var DefaultScopes = []string{"account", "models:infer", "models:read", "helix:admin"}

// ErrNotLoggedIn: no credentials file, or its tokens are no longer valid.
var ErrNotLoggedIn = errors.New("not logged in (run helixctl login)")

// refreshMargin: an access token this close to its expiry is refreshed.
const refreshMargin = 30 * time.Second

// maxBody bounds what is read from helix-authz.
const maxBody = 1 << 20

// Credentials is the credentials file.
type Credentials struct {
	Issuer       string    `json:"issuer"`
	ClientID     string    `json:"client_id"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	ExpiresAt    time.Time `json:"expires_at"`
	Scope        string    `json:"scope,omitempty"`
	// CAFile is the CA the issuer's certificate was checked against at
	// login ("" for the system roots), used again for refreshes.
	CAFile string `json:"ca_file,omitempty"`
}

// DefaultPath is credentials.json in the user's config folder.
func DefaultPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("cliauth: no config folder: %w", err)
	}
	return filepath.Join(dir, "helixflow", "credentials.json"), nil
}

// Load reads the credentials file; ErrNotLoggedIn when there is none.
func Load(path string) (*Credentials, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotLoggedIn
	}
	if err != nil {
		return nil, fmt.Errorf("cliauth: %w", err)
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil || c.Issuer == "" || c.RefreshToken == "" {
		return nil, fmt.Errorf("cliauth: %s is not a credentials file; delete it and log in again", path)
	}
	return &c, nil
}

// Save writes c to path: folder 0700, file 0600, atomically.
func Save(path string, c *Credentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("cliauth: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("cliauth: %w", err)
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// CheckIssuer accepts an https URL, or http on a loopback host (local
// development), without query or fragment; it returns it without a
// trailing slash.
func CheckIssuer(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("cliauth: issuer %q must be an absolute URL without query or fragment", raw)
	}
	if u.Scheme != "https" && (u.Scheme != "http" || !netaddr.LoopbackHost(u.Hostname())) {
		return "", fmt.Errorf("cliauth: issuer %q must use https (http only on a loopback host)", raw)
	}
	return strings.TrimSuffix(raw, "/"), nil
}

// HTTPClient trusts caFile's CA ("" : the system roots).
func HTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("cliauth: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cliauth: CA file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// Metadata is what login needs of RFC 8414's document.
type Metadata struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
}

// Discover reads the issuer's metadata, which must name the issuer
// itself (RFC 8414 3.3) and offer the code grant with PKCE S256.
func Discover(ctx context.Context, hc *http.Client, issuer string) (*Metadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/.well-known/oauth-authorization-server", nil)
	if err != nil {
		return nil, fmt.Errorf("cliauth: %w", err)
	}
	var m Metadata
	if err := doJSON(hc, req, &m); err != nil {
		return nil, fmt.Errorf("cliauth: metadata of %s: %w", issuer, err)
	}
	switch {
	case m.Issuer != issuer:
		return nil, fmt.Errorf("cliauth: the metadata at %s names issuer %q", issuer, m.Issuer)
	case m.AuthorizationEndpoint == "" || m.TokenEndpoint == "":
		return nil, fmt.Errorf("cliauth: %s does not offer people's sign-in (no authorization endpoint: is its people's API on?)", issuer)
	case !contains(m.CodeChallengeMethods, "S256"):
		return nil, fmt.Errorf("cliauth: %s does not offer PKCE S256", issuer)
	}
	for _, e := range []string{m.AuthorizationEndpoint, m.TokenEndpoint} {
		if _, err := CheckIssuer(e); err != nil || !strings.HasPrefix(e, issuer+"/") {
			return nil, fmt.Errorf("cliauth: endpoint %q is not under the issuer %s", e, issuer)
		}
	}
	return &m, nil
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// Login is one sign-in.
type Login struct {
	Issuer string
	HTTP   *http.Client
	Scopes []string
	// Open opens the URL in a browser (an error is fine: the URL is also
	// printed); nil prints it only.
	Open func(url string) error
	// Prompt receives what the person must be told (the URL).
	Prompt io.Writer
	// Timeout bounds the wait for the browser (5 minutes when zero).
	Timeout time.Duration
}

// Run signs the person in and returns the tokens.
func (l *Login) Run(ctx context.Context) (*Credentials, error) {
	issuer, err := CheckIssuer(l.Issuer)
	if err != nil {
		return nil, err
	}
	md, err := Discover(ctx, l.HTTP, issuer)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cliauth: loopback listener: %w", err)
	}
	defer ln.Close()
	redirect := fmt.Sprintf("http://127.0.0.1:%d%s", ln.Addr().(*net.TCPAddr).Port, wire.HelixctlCallbackPath)
	state, err := random()
	if err != nil {
		return nil, err
	}
	verifier, err := random()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(verifier))
	scopes := l.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	authURL := md.AuthorizationEndpoint + "?" + url.Values{
		"response_type": {"code"}, "client_id": {ClientID}, "redirect_uri": {redirect},
		"scope": {strings.Join(scopes, " ")}, "state": {state},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}.Encode()
	if l.Prompt != nil {
		fmt.Fprintf(l.Prompt, "Sign in to %s in your browser. If it does not open, visit:\n\n  %s\n\n", issuer, authURL)
	}
	if l.Open != nil {
		_ = l.Open(authURL)
	}
	timeout := l.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	code, err := awaitCallback(wctx, ln, state)
	if err != nil {
		return nil, err
	}
	tr, err := tokenRequest(ctx, l.HTTP, md.TokenEndpoint, url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"client_id": {ClientID}, "code_verifier": {verifier},
	})
	if err != nil {
		return nil, err
	}
	return tr.credentials(issuer, time.Now()), nil
}

// random is 32 random bytes, base64url (43 characters: a PKCE verifier).
func random() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("cliauth: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// awaitCallback serves the loopback listener until the one callback with
// the right state arrives (or ctx ends) and returns its code. Requests
// without our state (a stray browser tab, a local process guessing) are
// answered 400 and do not end the wait.
func awaitCallback(ctx context.Context, ln net.Listener, state string) (string, error) {
	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+wire.HelixctlCallbackPath, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			http.Error(w, "This is not the sign-in helixctl is waiting for.", http.StatusBadRequest)
			return
		}
		var res result
		if e := q.Get("error"); e != "" {
			res.err = fmt.Errorf("cliauth: sign-in refused: %s: %s", e, q.Get("error_description"))
		} else if res.code = q.Get("code"); res.code == "" {
			res.err = errors.New("cliauth: the callback carries no code")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		msg := "You are signed in to helixctl. You can close this tab."
		if res.err != nil {
			msg = "Sign-in failed: " + res.err.Error()
		}
		fmt.Fprintf(w, "<!doctype html><title>helixctl</title><p>%s</p>\n", html.EscapeString(msg))
		select {
		case done <- res:
		default:
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	select {
	case res := <-done:
		return res.code, res.err
	case <-ctx.Done():
		return "", fmt.Errorf("cliauth: no sign-in arrived: %w", ctx.Err())
	}
}

// tokenResponse is RFC 6749 5.1's answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
}

func (t *tokenResponse) credentials(issuer string, now time.Time) *Credentials {
	return &Credentials{
		Issuer: issuer, ClientID: ClientID, AccessToken: t.AccessToken, RefreshToken: t.RefreshToken,
		ExpiresAt: now.Add(time.Duration(t.ExpiresIn) * time.Second).UTC(), Scope: t.Scope,
	}
}

// OAuthError is an RFC 6749 5.2 error answer.
type OAuthError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *OAuthError) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Description)
}

func tokenRequest(ctx context.Context, hc *http.Client, endpoint string, form url.Values) (*tokenResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("cliauth: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var tr tokenResponse
	if err := doJSON(hc, req, &tr); err != nil {
		return nil, fmt.Errorf("cliauth: token: %w", err)
	}
	if tr.AccessToken == "" || tr.RefreshToken == "" || !strings.EqualFold(tr.TokenType, "bearer") {
		return nil, errors.New("cliauth: token: the answer lacks an access or refresh token")
	}
	return &tr, nil
}

// doJSON sends req and decodes a 200 answer into v; any other answer is
// an *OAuthError when it is one, else an error naming the status.
func doJSON(hc *http.Client, req *http.Request, v any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		oe := &OAuthError{Status: resp.StatusCode}
		if json.Unmarshal(body, oe) == nil && oe.Code != "" {
			return oe
		}
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(body, v)
}

// Session is a logged-in person's credentials file.
type Session struct {
	Path string
	// HTTP overrides the client made from the file's CAFile.
	HTTP *http.Client
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (s *Session) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Session) client(c *Credentials) (*http.Client, error) {
	if s.HTTP != nil {
		return s.HTTP, nil
	}
	return HTTPClient(c.CAFile)
}

// Current returns the credentials with an access token valid for a while,
// refreshing it (and saving the rotated refresh token) when it is about to
// expire. A refresh helix-authz refuses (the session ended: logout
// elsewhere, replay, erasure) is ErrNotLoggedIn.
func (s *Session) Current(ctx context.Context) (*Credentials, error) {
	c, err := Load(s.Path)
	if err != nil {
		return nil, err
	}
	if s.now().Add(refreshMargin).Before(c.ExpiresAt) {
		return c, nil
	}
	unlock, err := lockFile(s.Path + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another process may have refreshed while we waited for the lock.
	if c, err = Load(s.Path); err != nil {
		return nil, err
	}
	if s.now().Add(refreshMargin).Before(c.ExpiresAt) {
		return c, nil
	}
	hc, err := s.client(c)
	if err != nil {
		return nil, err
	}
	md, err := Discover(ctx, hc, c.Issuer)
	if err != nil {
		return nil, err
	}
	tr, err := tokenRequest(ctx, hc, md.TokenEndpoint, url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {c.RefreshToken}, "client_id": {c.ClientID},
	})
	var oe *OAuthError
	if errors.As(err, &oe) && oe.Code == "invalid_grant" {
		return nil, fmt.Errorf("%w: %s", ErrNotLoggedIn, oe.Description)
	}
	if err != nil {
		return nil, err
	}
	next := tr.credentials(c.Issuer, s.now())
	next.CAFile = c.CAFile
	if err := Save(s.Path, next); err != nil {
		return nil, err
	}
	return next, nil
}

// Logout revokes the refresh token (which ends the session and its access
// tokens) and deletes the file. A file whose token helix-authz no longer
// knows goes too; when helix-authz cannot be reached the file stays, so
// that logout can be run again.
func (s *Session) Logout(ctx context.Context) error {
	c, err := Load(s.Path)
	if err != nil {
		return err
	}
	hc, err := s.client(c)
	if err != nil {
		return err
	}
	md, err := Discover(ctx, hc, c.Issuer)
	if err != nil {
		return err
	}
	if md.RevocationEndpoint == "" {
		return fmt.Errorf("cliauth: %s has no revocation endpoint", c.Issuer)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.RevocationEndpoint, strings.NewReader(url.Values{
		"token": {c.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {c.ClientID},
	}.Encode()))
	if err != nil {
		return fmt.Errorf("cliauth: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if err := doJSON(hc, req, nil); err != nil {
		return fmt.Errorf("cliauth: revoke (the credentials stay in %s; run logout again): %w", s.Path, err)
	}
	if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cliauth: %w", err)
	}
	_ = os.Remove(s.Path + ".lock")
	return nil
}
