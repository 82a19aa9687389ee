package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/webapi"
	"github.com/helixflow/helixflow/internal/wire"
)

// The JSON API's paths.
const (
	PathModels = wire.APIPrefix + "models"
	PathModel  = wire.APIPrefix + "models/{model}"
)

// Machines authenticates machine callers (check.Service).
type Machines interface {
	Authenticate(ctx context.Context, authorization, apiKey string) (*check.Principal, error)
}

// Cookies resolves a browser session (session.Manager).
type Cookies interface {
	FromCookie(r *http.Request) (p session.Principal, ok bool, err error)
}

// People says what a person may see: whether they are a platform admin,
// and the union of their organizations' allowed scopes. found is false
// for a person that no longer exists (erased).
type People interface {
	PersonScopes(ctx context.Context, userID string) (platformAdmin bool, scopes []string, found bool, err error)
}

// HandlerConfig assembles the JSON API. Nil Cookies, PersonTokens or
// People: no person is recognized that way (the people's API is off).
type HandlerConfig struct {
	// Source is the catalogue; nil answers 503 "not configured" (helix-authz
	// started without --xds-address).
	Source       Source
	Machines     Machines
	Cookies      Cookies
	PersonTokens session.BearerVerifier
	People       People
	Logger       *slog.Logger
}

// Handler serves GET /api/v1/models and /api/v1/models/{model}.
type Handler struct {
	cfg HandlerConfig
	log *slog.Logger
}

// NewHandler returns the JSON API of the catalogue.
func NewHandler(cfg HandlerConfig) *Handler {
	h := &Handler{cfg: cfg, log: cfg.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	return h
}

// Mount registers the routes on mux (405 for other methods).
func (h *Handler) Mount(mux *http.ServeMux) {
	webapi.Handle(mux,
		webapi.Route{Pattern: http.MethodGet + " " + PathModels, Handler: http.HandlerFunc(h.list)},
		webapi.Route{Pattern: http.MethodGet + " " + PathModel, Handler: http.HandlerFunc(h.get)},
	)
}

// ListResponse is GET /api/v1/models's answer.
type ListResponse struct {
	Models []Model `json:"models"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	models, ok := h.visible(w, r)
	if !ok {
		return
	}
	webapi.WriteJSON(w, http.StatusOK, ListResponse{Models: models})
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	models, ok := h.visible(w, r)
	if !ok {
		return
	}
	name := r.PathValue("model")
	if err := wire.CheckModelName(name); err != nil {
		webapi.WriteError(w, http.StatusBadRequest, webapi.CodeInvalidRequest, "model: "+err.Error())
		return
	}
	for _, m := range models {
		if m.Name == name {
			webapi.WriteJSON(w, http.StatusOK, m)
			return
		}
	}
	// One answer whether the model is not served or the caller may not
	// see it: the catalogue is not a way to learn other callers' models.
	webapi.WriteError(w, http.StatusNotFound, webapi.CodeNotFound,
		fmt.Sprintf("model %q is not served, or your credentials do not reach it", name))
}

// visible authenticates the caller and returns the catalogue filtered for
// them; on failure it has answered.
func (h *Handler) visible(w http.ResponseWriter, r *http.Request) ([]Model, bool) {
	a, ok := h.access(w, r)
	if !ok {
		return nil, false
	}
	if h.cfg.Source == nil {
		webapi.WriteError(w, http.StatusServiceUnavailable, webapi.CodeUnavailable, "the model catalogue is not configured")
		return nil, false
	}
	models, err := h.cfg.Source.Models(r.Context())
	if err != nil {
		if r.Context().Err() == nil {
			h.log.Warn("model catalogue unavailable", "error", err)
		}
		webapi.WriteError(w, http.StatusServiceUnavailable, webapi.CodeUnavailable, "the model catalogue cannot be read right now; try again shortly")
		return nil, false
	}
	return Filter(models, a), true
}

// access resolves the caller: a machine credential (an API key in
// x-api-key or as the bearer, or a client's token), a person's bearer
// token, or a person's session cookie. A bearer JWT is tried as a
// person's first; any refusal other than "cannot check now" sends it the
// machine way, which judges it on its own.
func (h *Handler) access(w http.ResponseWriter, r *http.Request) (Access, bool) {
	authz, keys := r.Header.Values("Authorization"), r.Header.Values(wire.HeaderAPIKey)
	if len(authz) > 1 || len(keys) > 1 {
		webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "send one Authorization or x-api-key header, not several")
		return Access{}, false
	}
	auth, key := first(authz), first(keys)
	if auth != "" && key == "" && !isKeyBearer(auth) && h.cfg.PersonTokens != nil && h.cfg.People != nil {
		if raw, ok := bearerToken(auth); ok {
			uid, _, _, err := h.cfg.PersonTokens.VerifyUserToken(r.Context(), raw)
			switch {
			case err == nil:
				return h.person(w, r, uid, false, false)
			case errors.Is(err, session.ErrUnavailable):
				h.unavailable(w, "people's tokens", err)
				return Access{}, false
			}
		}
	}
	if auth != "" || key != "" {
		if h.cfg.Machines == nil {
			webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "client credentials are not accepted here")
			return Access{}, false
		}
		p, err := h.cfg.Machines.Authenticate(r.Context(), auth, key)
		switch {
		case errors.Is(err, check.ErrUnavailable):
			h.unavailable(w, "client credentials", err)
			return Access{}, false
		case err != nil:
			webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized,
				"the credential is not valid: send a person's or client's bearer token, or an API key (Authorization: Bearer or x-api-key)")
			return Access{}, false
		}
		return ForClient(p), true
	}
	if h.cfg.Cookies != nil && h.cfg.People != nil {
		p, ok, err := h.cfg.Cookies.FromCookie(r)
		if err != nil {
			h.unavailable(w, "sessions", err)
			return Access{}, false
		}
		if ok {
			return h.person(w, r, p.UserID, true, p.PlatformAdmin)
		}
	}
	webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized,
		"sign in, or send a bearer token or an API key (Authorization: Bearer or x-api-key)")
	return Access{}, false
}

// person is a person's access; admin is known already for a cookie.
func (h *Handler) person(w http.ResponseWriter, r *http.Request, userID string, adminKnown, admin bool) (Access, bool) {
	if adminKnown && admin {
		return Access{All: true}, true
	}
	isAdmin, scopes, found, err := h.cfg.People.PersonScopes(r.Context(), userID)
	switch {
	case err != nil:
		h.unavailable(w, "organizations", err)
		return Access{}, false
	case !found:
		webapi.WriteError(w, http.StatusUnauthorized, webapi.CodeUnauthorized, "the signed-in person no longer exists")
		return Access{}, false
	}
	return ForPerson(isAdmin, scopes), true
}

func (h *Handler) unavailable(w http.ResponseWriter, what string, err error) {
	h.log.Warn("model catalogue: the caller cannot be checked", "what", what, "error", err)
	webapi.WriteError(w, http.StatusServiceUnavailable, webapi.CodeUnavailable, "credentials cannot be checked right now; try again shortly")
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// bearerToken returns the token of "Bearer <token>".
func bearerToken(v string) (string, bool) {
	scheme, raw, ok := strings.Cut(v, " ")
	raw = strings.TrimSpace(raw)
	return raw, ok && strings.EqualFold(scheme, "Bearer") && raw != ""
}

// isKeyBearer: "Bearer hx_...", an API key, never a person's token.
func isKeyBearer(v string) bool {
	raw, ok := bearerToken(v)
	return ok && strings.HasPrefix(raw, check.APIKeyPrefix)
}
