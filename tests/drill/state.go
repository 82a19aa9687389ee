package main

// What must survive: made through the product's own APIs before the
// backup, and checked again after the restore.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/internal/mailtest"
	"github.com/helixflow/helixflow/internal/samplemodel"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/wire"
)

// How much of each kind the drill makes before the backup.
const (
	nClients  = 4
	nPeople   = 2
	password  = "a long enough passphrase of the restore drill"
	keyRotate = 2 // signing-key rotations before the backup
)

type client struct{ id, secret string }

// token is an access token issued before the backup and its client.
type token struct {
	client client
	value  string
	kid    string
}

// state is what the drill made before the backup.
type state struct {
	st    *helixstack.Stack
	admin *admin.Client
	https *http.Client

	clients   []client
	tokens    []token // must validate after the restore
	revoked   []token // revoked before the backup: must stay refused
	apiKeys   []string
	apiKeyIDs []string
	// revokedKey was revoked before the backup.
	revokedKey string
	kids       []string // the signing keys' ids in the JWKS at the backup
	people     []string // emails of verified people
	org        string
}

func newState(st *helixstack.Stack) (*state, error) {
	https, err := st.TLSClient("")
	if err != nil {
		return nil, err
	}
	https.Timeout = 10 * time.Second
	ac, err := admin.NewClient(st.AdminURL(), st.AdminToken, nil)
	if err != nil {
		return nil, err
	}
	return &state{st: st, admin: ac, https: https}, nil
}

// seed makes the state through the product's APIs, then waits until the
// workers' usage reports are in the ledger.
func (s *state) seed(ctx context.Context) error {
	for i := range nClients {
		c, err := s.newClient(ctx, fmt.Sprintf("drill-%d", i))
		if err != nil {
			return err
		}
		s.clients = append(s.clients, c)
	}
	// Tokens signed by each of several keys: a rotated key signs after
	// helix-authz's --key-publish-ahead (the drill sets 2 s).
	for r := 0; r <= keyRotate; r++ {
		for _, c := range s.clients {
			t, err := s.issue(ctx, c)
			if err != nil {
				return err
			}
			s.tokens = append(s.tokens, t)
		}
		if r == keyRotate {
			break
		}
		kid, err := s.admin.RotateKeys(ctx)
		if err != nil {
			return fmt.Errorf("rotate the signing keys: %w", err)
		}
		if err := s.waitSigning(ctx, s.clients[0], kid); err != nil {
			return err
		}
	}
	for i, c := range s.clients[:2] {
		t, err := s.issue(ctx, c)
		if err != nil {
			return err
		}
		if err := s.revoke(ctx, c, t.value); err != nil {
			return err
		}
		s.revoked = append(s.revoked, t)
		k, err := s.admin.CreateAPIKey(ctx, admin.APIKeyRequest{ClientID: c.id, Name: fmt.Sprintf("drill-%d", i), Scopes: []string{"models:infer"}})
		if err != nil {
			return fmt.Errorf("create an API key: %w", err)
		}
		s.apiKeys = append(s.apiKeys, k.Key)
		s.apiKeyIDs = append(s.apiKeyIDs, k.ID)
	}
	k, err := s.admin.CreateAPIKey(ctx, admin.APIKeyRequest{ClientID: s.clients[2].id, Name: "drill-revoked", Scopes: []string{"models:infer"}})
	if err != nil {
		return fmt.Errorf("create an API key: %w", err)
	}
	if err := s.admin.RevokeAPIKey(ctx, k.ID); err != nil {
		return fmt.Errorf("revoke an API key: %w", err)
	}
	s.revokedKey = k.Key
	if err := s.makePeople(ctx); err != nil {
		return err
	}
	// Requests through Envoy: usage rows (token and API key) and proof
	// that the state works before the backup.
	if err := s.waitServing(ctx); err != nil {
		return err
	}
	if problems := s.verify(ctx); len(problems) > 0 {
		return fmt.Errorf("before the backup: %s", strings.Join(problems, "; "))
	}
	if s.kids, err = s.jwksKids(ctx, s.st.Issuer); err != nil {
		return err
	}
	return s.waitUsage(ctx)
}

func (s *state) newClient(ctx context.Context, name string) (client, error) {
	plan, scopes, models := "standard", []string{"models:infer", "models:read"}, []string{"*"}
	v, err := s.admin.CreateClient(ctx, admin.ClientRequest{Name: &name, Plan: &plan, Scopes: &scopes, Models: &models})
	if err != nil {
		return client{}, fmt.Errorf("create client %s: %w", name, err)
	}
	return client{id: v.ClientID, secret: v.ClientSecret}, nil
}

func (s *state) issue(ctx context.Context, c client) (token, error) {
	t, err := s.st.Token(ctx, c.id, c.secret)
	if err != nil {
		return token{}, err
	}
	kid, err := kidOf(t.AccessToken)
	if err != nil {
		return token{}, err
	}
	return token{client: c, value: t.AccessToken, kid: kid}, nil
}

// waitSigning waits until a new token is signed by kid (the rotated key
// signs after --key-publish-ahead).
func (s *state) waitSigning(ctx context.Context, c client, kid string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		t, err := s.issue(ctx, c)
		if err != nil {
			return err
		}
		if t.kid == kid {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the rotated key %s did not sign within 30s (tokens still signed by %s)", kid, t.kid)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// revokeAfterBackup revokes a pre-backup token and API key after the
// backup, and waits until Check refuses both: revocations the restore
// loses. It returns the token's index.
func (s *state) revokeAfterBackup(ctx context.Context) (int, error) {
	i := len(s.tokens) - 1
	t := s.tokens[i]
	if err := s.revoke(ctx, t.client, t.value); err != nil {
		return 0, err
	}
	if err := s.admin.RevokeAPIKey(ctx, s.apiKeyIDs[1]); err != nil {
		return 0, fmt.Errorf("revoke an API key: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tc, err1 := s.infer(ctx, "Authorization", "Bearer "+t.value)
		kc, err2 := s.infer(ctx, "x-api-key", s.apiKeys[1])
		if err1 == nil && err2 == nil && refused(tc) && refused(kc) {
			return i, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("revoked after the backup, the token gets HTTP %d %v and the API key %d %v within 10s, want 401 or 403", tc, errOrNil(err1), kc, errOrNil(err2))
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// lostRevocations checks that the revocations made after the backup are
// gone after the restore (the token and the key work again) and says so.
func (s *state) lostRevocations(ctx context.Context, tokenIndex int) (string, error) {
	t := s.tokens[tokenIndex]
	active, err := s.introspect(ctx, s.st.Issuer, t)
	if err != nil {
		return "", err
	}
	tc, err1 := s.infer(ctx, "Authorization", "Bearer "+t.value)
	kc, err2 := s.infer(ctx, "x-api-key", s.apiKeys[1])
	if !active || err1 != nil || err2 != nil || tc != http.StatusOK || kc != http.StatusOK {
		return "", fmt.Errorf("revoked after the backup, after the restore: token active=%v HTTP %d %v, API key HTTP %d %v; the backup cannot hold them",
			active, tc, errOrNil(err1), kc, errOrNil(err2))
	}
	return fmt.Sprintf("token %d (client %s) and API key %s, revoked after the backup, are admitted again (introspection active, Check 200): revoke again what was revoked since the last backup",
		tokenIndex, t.client.id, s.apiKeyIDs[1]), nil
}

// firstWrite creates clients through the admin API until one is
// acknowledged (helix-authz on the restored database takes writes again)
// and returns when.
func (s *state) firstWrite(ctx context.Context) (time.Time, error) {
	deadline := time.Now().Add(60 * time.Second)
	name, plan, scopes, models := "after-restore", "standard", []string{"models:infer"}, []string{samplemodel.Name}
	for {
		_, err := s.admin.CreateClient(ctx, admin.ClientRequest{Name: &name, Plan: &plan, Scopes: &scopes, Models: &models})
		if err == nil {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no write acknowledged within 60s of the restore: %w", err)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}

// kidOf reads the kid from a JWT's header.
func kidOf(jwt string) (string, error) {
	head, _, ok := strings.Cut(jwt, ".")
	if !ok {
		return "", errors.New("token is not a JWT (no '.')")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", fmt.Errorf("token header: %w", err)
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", fmt.Errorf("token header: %w", err)
	}
	if h.KID == "" {
		return "", errors.New("token header has no kid")
	}
	return h.KID, nil
}

// revoke revokes a token at /oauth2/revoke (RFC 7009).
func (s *state) revoke(ctx context.Context, c client, tok string) error {
	code, _, err := s.form(ctx, s.st.Issuer+"/oauth2/revoke", c, url.Values{"token": {tok}})
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("revoke: HTTP %d", code)
	}
	return nil
}

// introspect asks issuer's /oauth2/introspect (RFC 7662), as the token's
// own client, whether the token is active.
func (s *state) introspect(ctx context.Context, issuer string, t token) (bool, error) {
	code, body, err := s.form(ctx, issuer+"/oauth2/introspect", t.client, url.Values{"token": {t.value}})
	if err != nil {
		return false, err
	}
	if code != http.StatusOK {
		return false, fmt.Errorf("introspect: HTTP %d: %.200s", code, body)
	}
	var v struct {
		Active bool `json:"active"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return false, fmt.Errorf("introspect: %w", err)
	}
	return v.Active, nil
}

func (s *state) form(ctx context.Context, u string, c client, f url.Values) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(f.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	return s.do(req)
}

func (s *state) do(req *http.Request) (int, []byte, error) {
	resp, err := s.https.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// infer makes one REST inference through Envoy, whose ext_authz Check
// decides on the credential in header; it returns the status.
func (s *state) infer(ctx context.Context, header, value string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.st.GatewayURL()+wire.RESTModelPath(samplemodel.Name, "", "infer"),
		bytes.NewReader(samplemodel.RESTBody()))
	if err != nil {
		return 0, err
	}
	req.Header.Set(header, value)
	code, _, err := s.do(req)
	return code, err
}

// waitServing waits until Envoy routes the sample model's requests to the
// worker (st.WaitServing wants every sample model; the drill loads one).
func (s *state) waitServing(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, err := s.infer(ctx, "Authorization", "Bearer "+s.tokens[0].value)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not served through Envoy within 60s: HTTP %d %v", samplemodel.Name, code, errOrNil(err))
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// jwksKids are the kids issuer's JWKS publishes.
func (s *state) jwksKids(ctx context.Context, issuer string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/.well-known/jwks.json", nil)
	if err != nil {
		return nil, err
	}
	code, body, err := s.do(req)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("JWKS of %s: HTTP %d %v", issuer, code, err)
	}
	var v struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	kids := make([]string, len(v.Keys))
	for i, k := range v.Keys {
		kids[i] = k.KID
	}
	slices.Sort(kids)
	return kids, nil
}

// makePeople signs people up through /api/v1/signup, verifies their
// addresses from the mails helix-authz sent (mailpit), logs the first in
// (a session) and makes it the owner of an organization.
func (s *state) makePeople(ctx context.Context) error {
	mail := mailtest.NewClient(s.st.MailpitURL)
	stamp := time.Now().UnixNano()
	for i := range nPeople {
		email := fmt.Sprintf("drill-%d-%d@example.test", stamp, i)
		if code, body, err := s.api(ctx, "/api/v1/signup", map[string]string{"email": email, "password": password, "display_name": "Drill Person"}); err != nil || code != http.StatusAccepted {
			return fmt.Errorf("sign up %s: HTTP %d %s %v", email, code, body, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, err := mail.WaitFor(wctx, email, "Confirm your email")
		cancel()
		if err != nil {
			return err
		}
		link, err := url.Parse(mailtest.Link(m, "/verify-email"))
		if err != nil || link.Query().Get("token") == "" {
			return fmt.Errorf("no /verify-email link in the mail to %s", email)
		}
		if code, body, err := s.api(ctx, "/api/v1/verify-email", map[string]string{"token": link.Query().Get("token")}); err != nil || code != http.StatusOK {
			return fmt.Errorf("verify %s: HTTP %d %s %v", email, code, body, err)
		}
		s.people = append(s.people, email)
	}
	if err := s.login(ctx, s.people[0]); err != nil {
		return err
	}
	org, err := s.admin.CreateOrg(ctx, admin.OrgRequest{Name: "drill-org", Owner: s.people[0]})
	if err != nil {
		return fmt.Errorf("create an organization: %w", err)
	}
	s.org = org.ID
	return nil
}

// login signs a person in (POST /api/v1/login).
func (s *state) login(ctx context.Context, email string) error {
	code, body, err := s.api(ctx, "/api/v1/login", map[string]string{"email": email, "password": password})
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("log %s in: HTTP %d %.200s %v", email, code, body, err)
	}
	return nil
}

func (s *state) api(ctx context.Context, path string, v any) (int, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.st.Issuer+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return s.do(req)
}

// waitUsage waits until the workers' usage reports of the requests made
// so far are in the ledger (they report every UsageFlushInterval).
func (s *state) waitUsage(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.st.DatabaseURL)
	if err != nil {
		return fmt.Errorf("connect to Postgres: %w", err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for {
		var hourly, keys int
		err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM usage_hourly), (SELECT count(*) FROM api_key_usage_daily)").Scan(&hourly, &keys)
		if err != nil {
			return fmt.Errorf("count usage rows: %w", err)
		}
		if hourly > 0 && keys > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no usage rows after 30s (usage_hourly %d, api_key_usage_daily %d)", hourly, keys)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// verify checks the state through the real paths and returns what is
// wrong: every token validates (introspection, and Envoy's Check admits
// it), the revoked ones are refused by both, the API keys work and the
// revoked one does not, and the people can log in.
func (s *state) verify(ctx context.Context) []string {
	var problems []string
	for i, t := range s.tokens {
		if ok, err := s.introspect(ctx, s.st.Issuer, t); err != nil || !ok {
			problems = append(problems, fmt.Sprintf("token %d (kid %s): introspection active=%v %v", i, t.kid, ok, errOrNil(err)))
		}
		if code, err := s.infer(ctx, "Authorization", "Bearer "+t.value); err != nil || code != http.StatusOK {
			problems = append(problems, fmt.Sprintf("token %d (kid %s): Check through Envoy HTTP %d %v, want 200", i, t.kid, code, errOrNil(err)))
		}
	}
	for i, t := range s.revoked {
		if ok, err := s.introspect(ctx, s.st.Issuer, t); err != nil || ok {
			problems = append(problems, fmt.Sprintf("revoked token %d: introspection active=%v %v", i, ok, errOrNil(err)))
		}
		if code, err := s.infer(ctx, "Authorization", "Bearer "+t.value); err != nil || !refused(code) {
			problems = append(problems, fmt.Sprintf("revoked token %d: HTTP %d %v, want 401 or 403", i, code, errOrNil(err)))
		}
	}
	for i, k := range s.apiKeys {
		if code, err := s.infer(ctx, "x-api-key", k); err != nil || code != http.StatusOK {
			problems = append(problems, fmt.Sprintf("API key %d: HTTP %d %v, want 200", i, code, errOrNil(err)))
		}
	}
	if code, err := s.infer(ctx, "x-api-key", s.revokedKey); err != nil || !refused(code) {
		problems = append(problems, fmt.Sprintf("revoked API key: HTTP %d %v, want 401 or 403", code, errOrNil(err)))
	}
	for _, p := range s.people {
		if err := s.login(ctx, p); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if _, err := s.admin.GetOrg(ctx, s.org); err != nil {
		problems = append(problems, "organization: "+err.Error())
	}
	return problems
}

// refused: Check's answers to a credential it does not admit.
func refused(code int) bool { return code == http.StatusUnauthorized || code == http.StatusForbidden }

func errOrNil(err error) any {
	if err == nil {
		return ""
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
