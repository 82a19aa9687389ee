// Package admin is helix-authz's administration API: OAuth2 clients, API
// keys, signing-key rotation, people (the platform-admin flag) and
// organizations (their policy), model rollouts (their requests: helix-xds
// runs them), as JSON over HTTP. A call carries the admin
// token with a Helix-Operator header naming the person acting, or a
// platform admin's access token (see actor.go); every action is audited.
// Secrets it creates are shown once, in the creating response, and stored
// only as hashes.
package admin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
)

// Store is the part of the database the admin API changes.
type Store interface {
	CreateClient(ctx context.Context, c *store.Client) error
	GetClient(ctx context.Context, id string) (*store.Client, error)
	ListClients(ctx context.Context) ([]store.Client, error)
	UpdateClient(ctx context.Context, c *store.Client) error
	SetClientSecret(ctx context.Context, id string, hash []byte) error
	DeleteClient(ctx context.Context, id string) error
	CreateAPIKey(ctx context.Context, k *store.APIKey) error
	ListAPIKeys(ctx context.Context, clientID string) ([]store.APIKey, error)
	RevokeAPIKey(ctx context.Context, idOrPrefix string) error
}

// KeyRotator rotates the token-signing key on demand.
type KeyRotator interface {
	Rotate(ctx context.Context) (kid string, err error)
}

// Config configures the admin API.
type Config struct {
	Store  Store
	Keys   KeyRotator
	Hasher *secret.Hasher
	// Plans are the gateway's plans: a client gets only one of them, and
	// a new client without one the default plan.
	Plans *Plans
	// Token is the admin bearer token; requests without it (or a platform
	// admin's access token) get 401.
	Token string
	// People serves the users and organizations endpoints (nil: they
	// answer 501).
	People PeopleStore
	// UserTokens verifies platform admins' access tokens (nil: only the
	// admin token is accepted).
	UserTokens UserTokenVerifier
	// Audit receives every action (nil: none recorded).
	Audit audit.Recorder
	// Trail serves the audit endpoints, PersonalData the users' export
	// and erasure (privacy.go; nil: they answer 501).
	Trail        AuditTrail
	PersonalData PersonalData
	// Source returns a request's source address for the audit trail
	// (nil: the TCP peer).
	Source func(*http.Request) string
	// Usage serves GET /admin/v1/usage (the usage ledger's report over
	// every organization; extauthz/usage); nil: 501.
	Usage http.Handler
	// Rollouts serves the rollout requests (rollouts.go; nil: they answer
	// 501); Models is the catalogue a new rollout's model and versions
	// are checked against (nil: starting one answers 501).
	Rollouts RolloutStore
	Models   Models
	Logger   *slog.Logger
	Now      func() time.Time
}

// maxBody bounds admin request bodies.
const maxBody = 64 << 10

type api struct {
	cfg       Config
	tokenHash [32]byte
}

// Handler returns the admin API. It refuses to serve without a token of at
// least 32 characters.
func Handler(cfg Config) (http.Handler, error) {
	if len(cfg.Token) < 32 {
		return nil, errors.New("admin token must be at least 32 characters")
	}
	if cfg.Store == nil || cfg.Hasher == nil {
		return nil, errors.New("admin API needs a store and a hasher")
	}
	if cfg.Plans == nil {
		return nil, errors.New("admin API needs the gateway's plans (the gateway config file)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &api{cfg: cfg, tokenHash: sha256.Sum256([]byte(cfg.Token))}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/v1/clients", a.createClient)
	mux.HandleFunc("GET /admin/v1/clients", a.listClients)
	mux.HandleFunc("GET /admin/v1/clients/{id}", a.getClient)
	mux.HandleFunc("PATCH /admin/v1/clients/{id}", a.updateClient)
	mux.HandleFunc("DELETE /admin/v1/clients/{id}", a.deleteClient)
	mux.HandleFunc("POST /admin/v1/clients/{id}/rotate-secret", a.rotateSecret)
	mux.HandleFunc("POST /admin/v1/apikeys", a.createAPIKey)
	mux.HandleFunc("GET /admin/v1/apikeys", a.listAPIKeys)
	mux.HandleFunc("DELETE /admin/v1/apikeys/{id}", a.revokeAPIKey)
	mux.HandleFunc("POST /admin/v1/keys/rotate", a.rotateKeys)
	mux.HandleFunc("GET /admin/v1/users", a.listUsers)
	mux.HandleFunc("GET /admin/v1/users/{id}", a.getUser)
	mux.HandleFunc("PATCH /admin/v1/users/{id}", a.updateUser)
	mux.HandleFunc("GET /admin/v1/orgs", a.listOrgs)
	mux.HandleFunc("POST /admin/v1/orgs", a.createOrg)
	mux.HandleFunc("GET /admin/v1/orgs/{org}", a.getOrg)
	mux.HandleFunc("PUT /admin/v1/orgs/{org}/policy", a.setOrgPolicy)
	a.privacyRoutes(mux)
	a.rolloutRoutes(mux)
	if cfg.Usage != nil {
		mux.Handle("GET /admin/v1/usage", cfg.Usage)
	} else {
		mux.HandleFunc("GET /admin/v1/usage", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotImplemented, "the usage ledger is not configured")
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such admin endpoint")
	})
	return a.authenticate(mux), nil
}

// ClientView is a client as the admin API shows it; ClientSecret is set
// only in the response that created or rotated it.
type ClientView struct {
	ClientID     string    `json:"client_id"`
	ClientSecret string    `json:"client_secret,omitempty"`
	Name         string    `json:"name"`
	Scopes       []string  `json:"scopes"`
	Models       []string  `json:"models"`
	Audience     []string  `json:"audience"`
	Plan         string    `json:"plan"`
	Enabled      bool      `json:"enabled"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// A client people sign in to (AppFields).
	Public       bool     `json:"public"`
	RedirectURIs []string `json:"redirect_uris"`
	GrantTypes   []string `json:"grant_types"`
}

// ViewClient returns c as the admin API shows it (no secret).
func ViewClient(c *store.Client) ClientView {
	gts := c.GrantTypes
	if len(gts) == 0 {
		gts = []string{store.GrantClientCredentials}
	}
	return ClientView{
		ClientID: c.ID, Name: c.Name, Scopes: nonNil(c.Scopes), Models: nonNil(c.Models), Audience: nonNil(c.Audience),
		Plan: c.Plan, Enabled: c.Enabled, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
		Public: c.Public, RedirectURIs: nonNil(c.RedirectURIs), GrantTypes: gts,
	}
}

// ClientRequest creates or (with only some fields set) updates a client.
// Plan must be one of the gateway's plans; a new client without one gets
// the default plan, and without Models no model at all.
type ClientRequest struct {
	Name     *string   `json:"name"`
	Scopes   *[]string `json:"scopes"`
	Models   *[]string `json:"models"`
	Audience *[]string `json:"audience"`
	Plan     *string   `json:"plan"`
	Enabled  *bool     `json:"enabled"`
}

// Apply checks the fields set in r and writes them into c: the one home of
// the rules for a client's name, scopes, models, audience and plan, which
// the organizations' API applies too.
func (r *ClientRequest) Apply(c *store.Client, plans *Plans) error { return r.apply(c, plans.get()) }

func (r *ClientRequest) apply(c *store.Client, plans *planSet) error {
	if r.Name != nil {
		if err := checkName("name", *r.Name); err != nil {
			return err
		}
		c.Name = *r.Name
	}
	if r.Scopes != nil {
		if err := checkScopes("scopes", *r.Scopes); err != nil {
			return err
		}
		c.Scopes = *r.Scopes
	}
	if r.Models != nil {
		if err := checkModels(*r.Models); err != nil {
			return err
		}
		c.Models = *r.Models
	}
	if r.Audience != nil {
		if err := checkAudience(*r.Audience); err != nil {
			return err
		}
		c.Audience = *r.Audience
	}
	if r.Plan != nil {
		if err := plans.check(*r.Plan); err != nil {
			return err
		}
		c.Plan = *r.Plan
	}
	if r.Enabled != nil {
		c.Enabled = *r.Enabled
	}
	return nil
}

func (a *api) createClient(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ClientRequest
		AppFields
	}
	if !decode(w, r, &req) {
		return
	}
	// No model until granted (--model): a scope alone reaches nothing.
	plans := a.cfg.Plans.get()
	c := &store.Client{Plan: plans.def, Models: []string{}, Enabled: true}
	if err := req.ClientRequest.apply(c, plans); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := req.AppFields.apply(c); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(c.Scopes) == 0 {
		writeError(w, http.StatusBadRequest, "scopes: at least one scope is required")
		return
	}
	sec, err := NewClientCredentials(c, a.cfg.Hasher)
	if err != nil {
		a.internal(w, "generate client credentials", err)
		return
	}
	id := c.ID
	if err := a.cfg.Store.CreateClient(r.Context(), c); err != nil {
		a.audit(r, "admin.clients.create", "client:"+id, audit.ResultFailure, nil)
		a.storeError(w, "create client", err)
		return
	}
	a.audit(r, "admin.clients.create", "client:"+id, audit.ResultSuccess, map[string]string{"plan": c.Plan, "scopes": strings.Join(c.Scopes, " ")})
	// The client exists now: its secret must reach the caller even if the
	// read-back fails, or the caller retries and makes a second client.
	created, err := a.cfg.Store.GetClient(r.Context(), id)
	if err != nil {
		a.cfg.Logger.Warn("read back created client", "client_id", id, "error", err)
		created = c
	}
	v := ViewClient(created)
	v.ClientSecret = sec
	a.cfg.Logger.Info("client created", "client_id", id, "plan", c.Plan)
	writeJSON(w, http.StatusCreated, v)
}

func (a *api) listClients(w http.ResponseWriter, r *http.Request) {
	cs, err := a.cfg.Store.ListClients(r.Context())
	if err != nil {
		a.storeError(w, "list clients", err)
		return
	}
	out := make([]ClientView, 0, len(cs))
	for i := range cs {
		out = append(out, ViewClient(&cs[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) getClient(w http.ResponseWriter, r *http.Request) {
	c, err := a.cfg.Store.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		a.storeError(w, "get client", err)
		return
	}
	writeJSON(w, http.StatusOK, ViewClient(c))
}

func (a *api) updateClient(w http.ResponseWriter, r *http.Request) {
	var req ClientRequest
	if !decode(w, r, &req) {
		return
	}
	c, err := a.cfg.Store.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		a.storeError(w, "get client", err)
		return
	}
	if err := req.apply(c, a.cfg.Plans.get()); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := a.cfg.Store.UpdateClient(r.Context(), c); err != nil {
		a.audit(r, "admin.clients.update", "client:"+c.ID, audit.ResultFailure, nil)
		a.storeError(w, "update client", err)
		return
	}
	a.audit(r, "admin.clients.update", "client:"+c.ID, audit.ResultSuccess,
		map[string]string{"plan": c.Plan, "scopes": strings.Join(c.Scopes, " "), "enabled": fmt.Sprint(c.Enabled)})
	updated, err := a.cfg.Store.GetClient(r.Context(), c.ID)
	if err != nil {
		a.storeError(w, "read client", err)
		return
	}
	a.cfg.Logger.Info("client updated", "client_id", c.ID)
	writeJSON(w, http.StatusOK, ViewClient(updated))
}

func (a *api) deleteClient(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.cfg.Store.DeleteClient(r.Context(), id); err != nil {
		a.audit(r, "admin.clients.delete", "client:"+id, audit.ResultFailure, nil)
		a.storeError(w, "delete client", err)
		return
	}
	a.audit(r, "admin.clients.delete", "client:"+id, audit.ResultSuccess, nil)
	a.cfg.Logger.Info("client deleted", "client_id", id)
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) rotateSecret(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sec, err := secret.NewClientSecret()
	if err != nil {
		a.internal(w, "generate client secret", err)
		return
	}
	if err := a.cfg.Store.SetClientSecret(r.Context(), id, a.cfg.Hasher.Hash(sec)); err != nil {
		a.audit(r, "admin.clients.rotate_secret", "client:"+id, audit.ResultFailure, nil)
		// The store finds no secret to set on a public client.
		if c, gerr := a.cfg.Store.GetClient(r.Context(), id); errors.Is(err, store.ErrNotFound) && gerr == nil && c.Public {
			writeError(w, http.StatusBadRequest, "client "+id+" is public: it has no secret to rotate")
			return
		}
		a.storeError(w, "rotate client secret", err)
		return
	}
	a.audit(r, "admin.clients.rotate_secret", "client:"+id, audit.ResultSuccess, nil)
	// The old secret no longer works: the new one must reach the caller
	// even if the read-back fails.
	v := ClientView{ClientID: id, Scopes: []string{}, Models: []string{}, Audience: []string{}}
	if c, err := a.cfg.Store.GetClient(r.Context(), id); err != nil {
		a.cfg.Logger.Warn("read back client after secret rotation", "client_id", id, "error", err)
	} else {
		v = ViewClient(c)
	}
	v.ClientSecret = sec
	a.cfg.Logger.Info("client secret rotated", "client_id", id)
	writeJSON(w, http.StatusOK, v)
}

// APIKeyView is an API key as the admin API shows it; Key is set only in
// the response that created it.
type APIKeyView struct {
	ID         string     `json:"id"`
	Key        string     `json:"key,omitempty"`
	Prefix     string     `json:"prefix"`
	ClientID   string     `json:"client_id"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	UseCount   int64      `json:"use_count"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
}

// ViewAPIKey returns k as the admin API shows it (no key).
func ViewAPIKey(k *store.APIKey) APIKeyView {
	return APIKeyView{
		ID: k.ID, Prefix: k.Prefix, ClientID: k.ClientID, Name: k.Name, Scopes: nonNil(k.Scopes),
		ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsedAt, UseCount: k.UseCount, RevokedAt: k.RevokedAt, CreatedAt: k.CreatedAt,
	}
}

// APIKeyRequest creates an API key. Scopes default to the client's;
// ExpiresIn is a Go duration ("720h"); empty means no expiry.
type APIKeyRequest struct {
	ClientID  string   `json:"client_id"`
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresIn string   `json:"expires_in"`
}

func (a *api) createAPIKey(w http.ResponseWriter, r *http.Request) {
	var req APIKeyRequest
	if !decode(w, r, &req) {
		return
	}
	if req.ClientID == "" {
		writeError(w, http.StatusBadRequest, "client_id: required")
		return
	}
	if err := checkName("name", req.Name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	client, err := a.cfg.Store.GetClient(r.Context(), req.ClientID)
	if err != nil {
		a.storeError(w, "get client", err)
		return
	}
	k, err := req.Check(client, a.cfg.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	key, err := NewAPIKeySecret(k, a.cfg.Hasher)
	if err != nil {
		a.internal(w, "generate API key", err)
		return
	}
	prefix := k.Prefix
	if err := a.cfg.Store.CreateAPIKey(r.Context(), k); err != nil {
		a.audit(r, "admin.apikeys.create", "apikey:"+prefix, audit.ResultFailure, nil)
		a.storeError(w, "create API key", err)
		return
	}
	a.audit(r, "admin.apikeys.create", "apikey:"+prefix, audit.ResultSuccess,
		map[string]string{"client": "client:" + client.ID, "scopes": strings.Join(k.Scopes, " ")})
	v := ViewAPIKey(k)
	v.Key = key
	v.CreatedAt = a.cfg.Now().UTC()
	a.cfg.Logger.Info("API key created", "client_id", client.ID, "prefix", prefix)
	writeJSON(w, http.StatusCreated, v)
}

// MaxAPIKeyLifetime bounds expires_in.
const MaxAPIKeyLifetime = 10 * 365 * 24 * time.Hour

// Check applies the rules of an API key to r for client: a name without
// control characters, scopes (the client's by default) that are scopes and
// that the client grants (check.ScopeGranted), and expires_in a positive
// Go duration of at most 10 years from now. It returns the key without
// its secret (see NewAPIKeySecret). The admin API and the organizations'
// API both create keys with it.
func (r *APIKeyRequest) Check(client *store.Client, now time.Time) (*store.APIKey, error) {
	if err := checkName("name", r.Name); err != nil {
		return nil, err
	}
	scopes := r.Scopes
	if scopes == nil {
		scopes = client.Scopes
	}
	if err := checkScopes("scopes", scopes); err != nil {
		return nil, err
	}
	if !covered(scopes, client.Scopes) {
		return nil, errors.New("scopes: an API key cannot have scopes its client lacks")
	}
	k := &store.APIKey{ClientID: client.ID, Name: r.Name, Scopes: scopes}
	if r.ExpiresIn != "" {
		d, err := time.ParseDuration(r.ExpiresIn)
		if err != nil || d <= 0 || d > MaxAPIKeyLifetime {
			return nil, errors.New("expires_in: a positive Go duration of at most 10 years, e.g. \"720h\"")
		}
		at := now.Add(d).UTC()
		k.ExpiresAt = &at
	}
	return k, nil
}

// NewClientCredentials gives c a new id and, unless it is public, a new
// secret, whose hash it keeps and which it returns (to be shown once; ""
// for a public client).
func NewClientCredentials(c *store.Client, h *secret.Hasher) (string, error) {
	id, err := secret.NewClientID()
	if err != nil {
		return "", err
	}
	c.ID = id
	if c.Public {
		return "", nil
	}
	sec, err := secret.NewClientSecret()
	if err != nil {
		return "", err
	}
	c.SecretHash = h.Hash(sec)
	return sec, nil
}

// NewAPIKeySecret gives k a new key: its id and prefix, and the hash of
// the key it returns (to be shown once).
func NewAPIKeySecret(k *store.APIKey, h *secret.Hasher) (string, error) {
	key, prefix, err := secret.NewAPIKey()
	if err != nil {
		return "", err
	}
	k.ID, k.Prefix, k.Hash = prefix, prefix, h.Hash(key)
	return key, nil
}

func (a *api) listAPIKeys(w http.ResponseWriter, r *http.Request) {
	ks, err := a.cfg.Store.ListAPIKeys(r.Context(), r.URL.Query().Get("client_id"))
	if err != nil {
		a.storeError(w, "list API keys", err)
		return
	}
	out := make([]APIKeyView, 0, len(ks))
	for i := range ks {
		out = append(out, ViewAPIKey(&ks[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) revokeAPIKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.cfg.Store.RevokeAPIKey(r.Context(), id); err != nil {
		a.audit(r, "admin.apikeys.revoke", "apikey:"+id, audit.ResultFailure, nil)
		a.storeError(w, "revoke API key", err)
		return
	}
	a.audit(r, "admin.apikeys.revoke", "apikey:"+id, audit.ResultSuccess, nil)
	a.cfg.Logger.Info("API key revoked", "id", id)
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) rotateKeys(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Keys == nil {
		writeError(w, http.StatusNotImplemented, "key rotation is not available")
		return
	}
	kid, err := a.cfg.Keys.Rotate(r.Context())
	if err != nil {
		a.audit(r, "admin.keys.rotate", "system", audit.ResultFailure, nil)
		a.storeError(w, "rotate signing key", err)
		return
	}
	a.audit(r, "admin.keys.rotate", "system", audit.ResultSuccess, map[string]string{"kid": kid})
	writeJSON(w, http.StatusOK, map[string]string{"kid": kid})
}

// decode reads a JSON body strictly: bounded, no unknown fields, one value.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		switch {
		case tooLarge(err):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxBody))
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, "request body is empty; a JSON object is required")
		default:
			writeError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		}
		return false
	}
	// Only white space may follow the value. (Decoder.More is not enough:
	// it says false for a stray ']' or '}' and for a read error.)
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if tooLarge(err) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxBody))
		} else {
			writeError(w, http.StatusBadRequest, "malformed JSON: data after the first value")
		}
		return false
	}
	return true
}

func tooLarge(err error) bool {
	var maxErr *http.MaxBytesError
	return errors.As(err, &maxErr)
}

func (a *api) storeError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, what+": not found")
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, what+": already exists")
	case errors.Is(err, store.ErrInvalid):
		writeError(w, http.StatusBadRequest, what+": "+err.Error())
	case errors.Is(err, store.ErrUnavailable):
		a.cfg.Logger.Error(what, "error", err)
		writeError(w, http.StatusServiceUnavailable, what+": database unavailable")
	default:
		a.internal(w, what, err)
	}
}

func (a *api) internal(w http.ResponseWriter, what string, err error) {
	a.cfg.Logger.Error(what, "error", err)
	writeError(w, http.StatusInternalServerError, what+": internal error")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
