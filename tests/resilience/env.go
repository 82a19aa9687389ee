package main

// The stack under test and what the checks know about it: the OAuth
// clients whose tokens carry the load, an API key, a revoked token.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/internal/samplemodel"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/wire"
)

// loadClients is how many OAuth clients share the load.
const loadClients = 4

type client struct{ id, secret, token string }

type env struct {
	st      *helixstack.Stack
	dir     string
	pool    *x509.CertPool
	admin   *admin.Client
	https   *http.Client
	clients []client // the load's
	tokens  tokens   // their current tokens, renewed by refreshTokens
	// lifetime is the tokens' (helix-authz's --token-lifetime).
	lifetime time.Duration
	// apiKey belongs to keyOwner; revoked was issued to clients[0] and
	// revoked: the checks expect the key to work and the token to be
	// refused after every fault.
	keyOwner client
	apiKey   string
	revoked  string
	// known are client ids that must survive (the load's, keyOwner, and
	// those whose creation was acknowledged while Postgres died).
	known       []string
	stopRefresh context.CancelFunc
	clock       *stepClock // the upgrade step under way
}

// startEnv starts the stack with authzReplicas more helix-authz
// instances and makes the clients.
func startEnv(ctx context.Context, o *options, authzReplicas int) (*env, error) {
	root, err := absRoot(o)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "helix-resilience-")
	if err != nil {
		return nil, err
	}
	st, err := helixstack.New(helixstack.Options{
		Root: root, Dir: dir, AuthzReplicas: authzReplicas, EnvoyHotRestart: o.envoyHotRestart,
		EnvoyDiscardStdout: true, // the access log would grow by the load's every request
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	e := &env{st: st, dir: dir}
	logf("starting the stack in %s (logs in %s)", dir, st.LogDir())
	if err := st.Start(ctx); err != nil {
		e.close()
		return nil, err
	}
	if err := e.setup(ctx); err != nil {
		e.close()
		return nil, err
	}
	refreshCtx, cancel := context.WithCancel(context.Background())
	e.stopRefresh = cancel
	go e.refreshTokens(refreshCtx)
	return e, nil
}

func (e *env) close() {
	if e.stopRefresh != nil {
		e.stopRefresh()
	}
	e.st.Close()
	if os.Getenv("KEEP_STATE") == "" {
		_ = os.RemoveAll(e.dir)
	}
}

func (e *env) setup(ctx context.Context) error {
	var err error
	if e.pool, err = e.st.CAPool(); err != nil {
		return err
	}
	if e.https, err = e.st.TLSClient(""); err != nil {
		return err
	}
	e.https.Timeout = 10 * time.Second
	if e.admin, err = admin.NewClient(e.st.AdminURL(), e.st.AdminToken, nil); err != nil {
		return err
	}
	e.tokens = make(tokens, loadClients)
	for i := range loadClients {
		c, err := e.newClient(ctx, fmt.Sprintf("load-%d", i))
		if err != nil {
			return err
		}
		e.clients = append(e.clients, c)
		e.tokens[i].Store(&c.token)
	}
	if e.keyOwner, err = e.newClient(ctx, "key-owner"); err != nil {
		return err
	}
	key, err := e.admin.CreateAPIKey(ctx, admin.APIKeyRequest{ClientID: e.keyOwner.id, Name: "chaos", Scopes: []string{"models:infer"}})
	if err != nil {
		return fmt.Errorf("create an API key: %w", err)
	}
	e.apiKey = key.Key
	tok, err := e.st.Token(ctx, e.clients[0].id, e.clients[0].secret)
	if err != nil {
		return err
	}
	if err := e.revoke(ctx, e.clients[0], tok.AccessToken); err != nil {
		return err
	}
	e.revoked = tok.AccessToken
	if err := e.st.WaitServing(ctx, e.clients[0].token); err != nil {
		return err
	}
	// The revocation reaches every replica's cache by notification: wait
	// until it is in force, so later checks test that it lasts.
	deadline := time.Now().Add(15 * time.Second)
	for {
		problems := e.verify(ctx)
		if len(problems) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the stack's state is not as set up: %s", strings.Join(problems, "; "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// newClient makes an OAuth client on plan standard with every model and
// gets it a token.
func (e *env) newClient(ctx context.Context, name string) (client, error) {
	plan, scopes, models := "standard", []string{"models:infer", "models:read"}, []string{"*"}
	v, err := e.admin.CreateClient(ctx, admin.ClientRequest{Name: &name, Plan: &plan, Scopes: &scopes, Models: &models})
	if err != nil {
		return client{}, fmt.Errorf("create client %s: %w", name, err)
	}
	tok, err := e.st.Token(ctx, v.ClientID, v.ClientSecret)
	if err != nil {
		return client{}, err
	}
	e.lifetime = tok.Lifetime
	e.known = append(e.known, v.ClientID)
	return client{id: v.ClientID, secret: v.ClientSecret, token: tok.AccessToken}, nil
}

// refreshTokens renews the load clients' tokens at half their lifetime,
// as a client does, until ctx ends; a failed renewal is retried every
// second (the old token still has half its life).
func (e *env) refreshTokens(ctx context.Context) {
	for {
		if err := sleep(ctx, max(e.lifetime/2, time.Second)); err != nil {
			return
		}
		for i, c := range e.clients {
			for ctx.Err() == nil {
				tok, err := e.st.Token(ctx, c.id, c.secret)
				if err == nil {
					e.tokens[i].Store(&tok.AccessToken)
					break
				}
				logf("renewing %s's token: %v", c.id, err)
				_ = sleep(ctx, time.Second)
			}
		}
	}
}

// revoke revokes a token at /oauth2/revoke (RFC 7009).
func (e *env) revoke(ctx context.Context, c client, token string) error {
	form := url.Values{"token": {token}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.st.Issuer+"/oauth2/revoke", strings.NewReader(form))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	resp, err := e.https.Do(req)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke: HTTP %d", resp.StatusCode)
	}
	return nil
}

// issue asks for a client-credentials token and returns the HTTP status
// (0 when no answer came).
func (e *env) issue(ctx context.Context, c client) int {
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.st.TokenURL(), strings.NewReader(form))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	resp, err := e.https.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// infer makes one REST inference through Envoy with a header and returns
// the status.
func (e *env) infer(ctx context.Context, header, value string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.st.GatewayURL()+wire.RESTModelPath(model, "", "infer"),
		strings.NewReader(string(samplemodel.RESTBody())))
	if err != nil {
		return 0, err
	}
	req.Header.Set(header, value)
	resp, err := e.https.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// verify checks that nothing was lost: every known client is still
// there, the API key still works, the revoked token is still refused.
// It returns what is wrong.
func (e *env) verify(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var problems []string
	list, err := e.admin.ListClients(ctx)
	if err != nil {
		return []string{"list clients: " + err.Error()}
	}
	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.ClientID
	}
	for _, id := range e.known {
		if !slices.Contains(ids, id) {
			problems = append(problems, "client "+id+" lost")
		}
	}
	if code, err := e.infer(ctx, "x-api-key", e.apiKey); err != nil || code != http.StatusOK {
		problems = append(problems, fmt.Sprintf("API key: HTTP %d %v, want 200", code, errOrNil(err)))
	}
	if code, err := e.infer(ctx, "Authorization", "Bearer "+e.revoked); err != nil || (code != http.StatusUnauthorized && code != http.StatusForbidden) {
		problems = append(problems, fmt.Sprintf("revoked token: HTTP %d %v, want 401 or 403", code, errOrNil(err)))
	}
	return problems
}

func errOrNil(err error) any {
	if err == nil {
		return ""
	}
	return err
}

var errLost = errors.New("data lost")
