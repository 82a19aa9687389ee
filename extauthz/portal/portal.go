// Package portal is HelixFlow's developer portal: server-rendered pages
// under /portal/ on helix-authz's public port (and, through Envoy, on the
// gateway's listener) for signing up, credentials, the model catalogue, an
// API explorer, usage and administration.
//
// The portal owns presentation only. Every read and change goes through
// helix-authz's JSON API in process (api.go): the same handlers, with the
// same validation, policy, throttles and audit trail as /api/v1, so no
// account or organization rule has a second home here. Pages work without
// script; the little JavaScript there is (web/assets) copies secrets and
// runs the explorer's inference, loaded from the same origin under a
// strict Content-Security-Policy with no inline script or style.
//
// CSRF: every form carries a token equal to the double-submit cookie
// __Host-helix_portal_csrf, and every POST must come from the public
// origin (Origin or, without one, Referer). A change made for a signed-in
// person is then sent to the JSON API with the session's own CSRF token.
package portal

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/internal/sourcelimit"
	"github.com/helixflow/helixflow/internal/wire"
)

//go:embed web
var web embed.FS

// ContentSecurityPolicy of every portal answer: scripts, styles, images
// and fetches from this origin only; nothing frames the portal.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Plan is one of the gateway's plans, as the home page lists them.
type Plan struct {
	Name              string
	RequestsPerSecond uint32 // 0: no per-second limit
	RequestsPerMinute uint32 // 0: no per-minute limit
	Default           bool   // the plan of clients with none
}

// Config assembles a Portal.
type Config struct {
	// API is helix-authz's public handler (its mux), which the portal
	// calls in process for every read and change.
	API http.Handler
	// Admin is helix-authz's admin API (server.Server.Admin), which the
	// admin pages call in process for a signed-in platform admin; nil:
	// the admin pages say the admin API is off.
	Admin http.Handler
	// Sessions resolves the browser session of a page request.
	Sessions *session.Manager
	// PublicOrigin is the scheme://host[:port] people reach the portal on
	// (helix-authz's --public-url): POSTs must come from it.
	PublicOrigin string
	// Plans returns the gateway's plans, for the home page (a func: they
	// follow the gateway config file as it changes); nil: none listed.
	Plans func() []Plan
	// Demo runs the home page's live inference; nil: no demo.
	Demo DemoTokens
	// DemoModel is the model the demo calls.
	DemoModel string
	// DemoLimit bounds the demo tokens minted per source address (nil:
	// none).
	DemoLimit *sourcelimit.Limiter
	Logger    *slog.Logger
}

// DemoTokens mints a short-lived access token for the portal's demo
// client, which may call DemoModel only, on the default plan.
type DemoTokens interface {
	DemoToken(r *http.Request) (token string, expiresIn int, err error)
}

// Portal serves the portal's pages.
type Portal struct {
	cfg   Config
	log   *slog.Logger
	pages map[string]*template.Template
}

// New parses the pages. Each file in web/pages defines {{define "content"}}
// (and optionally "scripts") and is rendered inside web/layout.html under
// its file name without ".html".
func New(cfg Config) (*Portal, error) {
	if cfg.API == nil || cfg.Sessions == nil {
		return nil, errors.New("portal: API and Sessions are required")
	}
	if cfg.PublicOrigin == "" {
		return nil, errors.New("portal: PublicOrigin is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Portal{cfg: cfg, log: cfg.Logger, pages: map[string]*template.Template{}}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(web, "web/layout.html")
	if err != nil {
		return nil, fmt.Errorf("portal: layout: %w", err)
	}
	files, err := fs.Glob(web, "web/pages/*.html")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		t, err := template.Must(base.Clone()).ParseFS(web, f)
		if err != nil {
			return nil, fmt.Errorf("portal: page %s: %w", f, err)
		}
		p.pages[strings.TrimSuffix(path.Base(f), ".html")] = t
	}
	return p, nil
}

// Mount registers the portal's routes on mux (helix-authz's public mux).
func (p *Portal) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, wire.PortalPrefix, http.StatusFound)
	})
	mux.Handle("GET "+wire.PortalPrefix+"assets/", http.StripPrefix(wire.PortalPrefix, assets()))
	for _, rt := range p.routes() {
		mux.Handle(rt.pattern, p.page(rt.handler, rt.signedIn))
	}
}

// route is one page: its pattern (method and path under /portal/), whether
// it needs a signed-in person, and its handler.
type route struct {
	pattern  string
	signedIn bool
	handler  pageHandler
}

// pageHandler answers one page request; it renders with p.render.
type pageHandler func(w http.ResponseWriter, r *http.Request, v *View)

// routes lists every page. Each page file's handlers add themselves here.
func (p *Portal) routes() []route {
	var rs []route
	for _, group := range [][]route{p.homeRoutes(), p.accountRoutes(), p.credentialRoutes(),
		p.modelRoutes(), p.explorerRoutes(), p.usageRoutes(), p.adminRoutes()} {
		rs = append(rs, group...)
	}
	return rs
}

// assets serves web/assets: whole files from the binary, never a listing
// and never a byte range (http.FileServer parses Range headers, whose
// unbounded parsing in Go 1.26.8 is GO-2026-6609: a few small files need
// none of it).
func assets() http.Handler {
	types := map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		typ, ok := types[path.Ext(name)]
		if !ok || !strings.HasPrefix(name, "assets/") || !fs.ValidPath(name) {
			http.NotFound(w, r)
			return
		}
		body, err := web.ReadFile("web/" + name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", typ)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}
