package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/helixflow/helixflow/extauthz/portal"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/extauthz/token"
	"github.com/helixflow/helixflow/internal/sourcelimit"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/config"
)

// DemoClientID is the first-party client of the portal's live demo: its
// tokens are minted by helix-authz itself (DemoTokenLifetime), never
// through /oauth2/token.
const DemoClientID = "helix-portal-demo"

// DemoTokenLifetime is the lifetime of a demo token: long enough for a
// visitor's few tries, short enough that a copied one is soon useless.
const DemoTokenLifetime = 5 * time.Minute

// demoClient is the demo's client as helix-authz ensures it at start: a
// public client (no secret) whose one grant type, refresh_token, it can
// never use (refresh tokens come only from authorization codes), so no
// token endpoint call gets it a token; it may infer with model only, on
// plan. An admin's later changes to it (plan, disabled) are kept and
// honoured by DemoToken.
func demoClient(model, plan string) *store.Client {
	return &store.Client{
		ID:         DemoClientID,
		Name:       "Developer portal demo",
		Public:     true,
		GrantTypes: []string{store.GrantRefreshToken},
		Scopes:     []string{"models:" + model + ":infer"},
		Models:     []string{model},
		Plan:       plan,
		Enabled:    true,
	}
}

// portalPlans lists the gateway config's plans for the home page.
func portalPlans(gw *config.Config) []portal.Plan {
	def := gw.DefaultPlan()
	out := make([]portal.Plan, 0, len(gw.Plans))
	for _, name := range gw.PlanNames() {
		p := gw.Plans[name]
		out = append(out, portal.Plan{Name: name, RequestsPerSecond: p.RequestsPerSecond,
			RequestsPerMinute: p.RequestsPerMinute, Default: name == def})
	}
	return out
}

// demoTokens mints the demo client's access tokens with the current
// signing key, as the token endpoint would for a client-credentials
// grant, from the client's in-memory row (so a disabled demo client gets
// none and a changed plan applies).
type demoTokens struct {
	sign    func(ctx context.Context, c token.Claims) (string, error)
	clients interface {
		GetClient(context.Context, string) (*store.Client, error)
	}
	issuer   string
	audience string
	now      func() time.Time
}

var errDemoOff = errors.New("the demo client is disabled or missing")

func (d *demoTokens) DemoToken(r *http.Request) (string, int, error) {
	ctx := r.Context()
	c, err := d.clients.GetClient(ctx, DemoClientID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", 0, errDemoOff
		}
		return "", 0, fmt.Errorf("demo client: %w", err)
	}
	if !c.Enabled {
		return "", 0, errDemoOff
	}
	now := d.now().Truncate(time.Second)
	if !token.IssuedAfter(now, c.TokensValidAfter) {
		// Its tokens were just cut off (this second): the next second's
		// are valid.
		return "", 0, errDemoOff
	}
	jti, err := newDemoJTI()
	if err != nil {
		return "", 0, err
	}
	aud := slices.Clone(c.Audience)
	if len(aud) == 0 {
		aud = []string{d.audience}
	}
	raw, err := d.sign(ctx, token.Claims{
		Issuer: d.issuer, Subject: c.ID, ClientID: c.ID, Audience: aud,
		Scopes: slices.Clone(c.Scopes), Models: slices.Clone(c.Models), Plan: c.Plan,
		JTI: jti, IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(DemoTokenLifetime),
	})
	if err != nil {
		return "", 0, err
	}
	return raw, int(DemoTokenLifetime / time.Second), nil
}

// planList is the home page's plans, replaced as the gateway file changes.
type planList struct{ v atomic.Pointer[[]portal.Plan] }

func (p *planList) set(gw *config.Config) { l := portalPlans(gw); p.v.Store(&l) }
func (p *planList) get() []portal.Plan {
	if l := p.v.Load(); l != nil {
		return *l
	}
	return nil
}

// mountPortal builds the portal over the public mux (which it calls in
// process) and mounts its pages there; with demoModel it ensures the
// demo client and mints its tokens.
func (s *Server) mountPortal(cfg Config, gw *config.Config) error {
	s.portalPlans = &planList{}
	s.portalPlans.set(gw)
	origin, err := session.Origin(s.PublicURL)
	if err != nil {
		return fmt.Errorf("portal: public URL: %w", err)
	}
	pc := portal.Config{
		API: s.Public, Admin: s.Admin, Sessions: s.Sessions, PublicOrigin: origin,
		Plans: s.portalPlans.get, Logger: s.log,
	}
	if cfg.PortalDemoModel != "" {
		if err := wire.CheckModelName(cfg.PortalDemoModel); err != nil {
			return fmt.Errorf("portal demo model %q: %w", cfg.PortalDemoModel, err)
		}
		s.demoClient = demoClient(cfg.PortalDemoModel, gw.DefaultPlan())
		pc.DemoModel = cfg.PortalDemoModel
		pc.Demo = &demoTokens{
			sign: func(ctx context.Context, c token.Claims) (string, error) {
				kid, alg, key, err := s.Keys.SigningKey(ctx)
				if err != nil {
					return "", fmt.Errorf("signing key: %w", err)
				}
				return token.Sign(c, key, kid, alg)
			},
			clients: s.clients, issuer: cfg.Issuer, audience: cfg.Audience, now: time.Now,
		}
	}
	if pc.Demo != nil {
		// Minting is cheap, but not free: a source gets a demo token every
		// 5 s after a burst of 5 (one per page view is plenty).
		if pc.DemoLimit, err = sourcelimit.New(sourcelimit.Config{Rate: 0.2, Burst: 5, TrustedProxies: cfg.TrustedProxies,
			Name: "portal_demo", Registerer: cfg.Registerer}); err != nil {
			return err
		}
	}
	p, err := portal.New(pc)
	if err != nil {
		return err
	}
	p.Mount(s.Public)
	s.Portal = p
	return nil
}

func newDemoJTI() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("demo token id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
