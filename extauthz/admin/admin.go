// Package admin is helix-authz's administration API: OAuth2 clients, API
// keys and signing-key rotation, as JSON over HTTP behind a bearer admin
// token. Secrets it creates are shown once, in the creating response, and
// stored only as hashes.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

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
	// Token is the admin bearer token; requests without it get 401.
	Token  string
	Logger *slog.Logger
	Now    func() time.Time
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
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such admin endpoint")
	})
	return a.authenticate(mux), nil
}

// authenticate compares the bearer token in constant time (of its hash, so
// the length is not revealed either).
func (a *api) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		h := sha256.Sum256([]byte(presented))
		if !ok || subtle.ConstantTimeCompare(h[:], a.tokenHash[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="helix-authz admin"`)
			writeError(w, http.StatusUnauthorized, "admin token required")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
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
}

func clientView(c *store.Client) ClientView {
	return ClientView{
		ClientID: c.ID, Name: c.Name, Scopes: nonNil(c.Scopes), Models: nonNil(c.Models), Audience: nonNil(c.Audience),
		Plan: c.Plan, Enabled: c.Enabled, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
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
	var req ClientRequest
	if !decode(w, r, &req) {
		return
	}
	// No model until granted (--model): a scope alone reaches nothing.
	plans := a.cfg.Plans.get()
	c := &store.Client{Plan: plans.def, Models: []string{}, Enabled: true}
	if err := req.apply(c, plans); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(c.Scopes) == 0 {
		writeError(w, http.StatusBadRequest, "scopes: at least one scope is required")
		return
	}
	id, err := secret.NewClientID()
	if err != nil {
		a.internal(w, "generate client id", err)
		return
	}
	sec, err := secret.NewClientSecret()
	if err != nil {
		a.internal(w, "generate client secret", err)
		return
	}
	c.ID, c.SecretHash = id, a.cfg.Hasher.Hash(sec)
	if err := a.cfg.Store.CreateClient(r.Context(), c); err != nil {
		a.storeError(w, "create client", err)
		return
	}
	// The client exists now: its secret must reach the caller even if the
	// read-back fails, or the caller retries and makes a second client.
	created, err := a.cfg.Store.GetClient(r.Context(), id)
	if err != nil {
		a.cfg.Logger.Warn("read back created client", "client_id", id, "error", err)
		created = c
	}
	v := clientView(created)
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
		out = append(out, clientView(&cs[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) getClient(w http.ResponseWriter, r *http.Request) {
	c, err := a.cfg.Store.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		a.storeError(w, "get client", err)
		return
	}
	writeJSON(w, http.StatusOK, clientView(c))
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
		a.storeError(w, "update client", err)
		return
	}
	updated, err := a.cfg.Store.GetClient(r.Context(), c.ID)
	if err != nil {
		a.storeError(w, "read client", err)
		return
	}
	a.cfg.Logger.Info("client updated", "client_id", c.ID)
	writeJSON(w, http.StatusOK, clientView(updated))
}

func (a *api) deleteClient(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.cfg.Store.DeleteClient(r.Context(), id); err != nil {
		a.storeError(w, "delete client", err)
		return
	}
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
		a.storeError(w, "rotate client secret", err)
		return
	}
	// The old secret no longer works: the new one must reach the caller
	// even if the read-back fails.
	v := ClientView{ClientID: id, Scopes: []string{}, Models: []string{}, Audience: []string{}}
	if c, err := a.cfg.Store.GetClient(r.Context(), id); err != nil {
		a.cfg.Logger.Warn("read back client after secret rotation", "client_id", id, "error", err)
	} else {
		v = clientView(c)
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

func apiKeyView(k *store.APIKey) APIKeyView {
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
	scopes := req.Scopes
	if scopes == nil {
		scopes = client.Scopes
	}
	if err := checkScopes("scopes", scopes); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !covered(scopes, client.Scopes) {
		writeError(w, http.StatusBadRequest, "scopes: an API key cannot have scopes its client lacks")
		return
	}
	k := &store.APIKey{ClientID: client.ID, Name: req.Name, Scopes: scopes}
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 || d > 10*365*24*time.Hour {
			writeError(w, http.StatusBadRequest, "expires_in: a positive Go duration of at most 10 years, e.g. \"720h\"")
			return
		}
		at := a.cfg.Now().Add(d).UTC()
		k.ExpiresAt = &at
	}
	key, prefix, err := secret.NewAPIKey()
	if err != nil {
		a.internal(w, "generate API key", err)
		return
	}
	k.ID, k.Prefix, k.Hash = prefix, prefix, a.cfg.Hasher.Hash(key)
	if err := a.cfg.Store.CreateAPIKey(r.Context(), k); err != nil {
		a.storeError(w, "create API key", err)
		return
	}
	v := apiKeyView(k)
	v.Key = key
	v.CreatedAt = a.cfg.Now().UTC()
	a.cfg.Logger.Info("API key created", "client_id", client.ID, "prefix", prefix)
	writeJSON(w, http.StatusCreated, v)
}

func (a *api) listAPIKeys(w http.ResponseWriter, r *http.Request) {
	ks, err := a.cfg.Store.ListAPIKeys(r.Context(), r.URL.Query().Get("client_id"))
	if err != nil {
		a.storeError(w, "list API keys", err)
		return
	}
	out := make([]APIKeyView, 0, len(ks))
	for i := range ks {
		out = append(out, apiKeyView(&ks[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) revokeAPIKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.cfg.Store.RevokeAPIKey(r.Context(), id); err != nil {
		a.storeError(w, "revoke API key", err)
		return
	}
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
		a.storeError(w, "rotate signing key", err)
		return
	}
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
