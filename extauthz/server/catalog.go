package server

import (
	"context"
	"errors"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/extauthz/session"
)

// dialCatalog is the client of helix-xds's Catalog; nil without an
// address (the catalogue then answers 503 "not configured").
func dialCatalog(cfg catalog.DialConfig) (*catalog.Client, error) {
	if cfg.Address == "" {
		return nil, nil
	}
	return catalog.Dial(cfg)
}

// mountCatalog serves GET /api/v1/models[/{model}] on Public: machine
// callers through Check's credential rules, people (with the people's
// API) by their session or bearer token.
func (s *Server) mountCatalog(people session.BearerVerifier) {
	cfg := catalog.HandlerConfig{Machines: s.Check, Logger: s.log}
	if s.Catalog != nil {
		cfg.Source = s.Catalog
	}
	if s.Accounts != nil {
		cfg.Cookies, cfg.PersonTokens, cfg.People = s.Sessions, people, catalog.PeopleDB{Pool: s.Store.Pool()}
	}
	catalog.NewHandler(cfg).Mount(s.Public)
}

// closeCatalog closes the connection to helix-xds, if any.
func (s *Server) closeCatalog() {
	if s.Catalog != nil {
		_ = s.Catalog.Close()
	}
}

// rolloutModels is the catalogue the admin API checks a new rollout
// against: nil without an address (starting a rollout answers 501), else
// s.Catalog, which is dialled after the admin API is made.
func (s *Server) rolloutModels(cfg catalog.DialConfig) admin.Models {
	if cfg.Address == "" {
		return nil
	}
	return lateCatalog{s}
}

type lateCatalog struct{ s *Server }

func (l lateCatalog) Models(ctx context.Context) ([]catalog.Model, error) {
	if l.s.Catalog == nil {
		return nil, errors.New("server: the model catalogue is not dialled yet")
	}
	return l.s.Catalog.Models(ctx)
}
