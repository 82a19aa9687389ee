package portal

import (
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/helixflow/helixflow/internal/sourcelimit"
	"github.com/helixflow/helixflow/internal/wire"
)

// homeRoutes: the home page and its live demo's token.
func (p *Portal) homeRoutes() []route {
	return []route{
		{pattern: "GET " + wire.PortalPrefix + "{$}", handler: p.home},
		{pattern: "POST " + wire.PortalPrefix + "demo/token", handler: p.demoToken},
	}
}

// homeData is the home page's.
type homeData struct {
	Plans []Plan
	// DemoModel is the demo's model ("" when the demo is off); DemoRequest
	// the KServe v2 request it starts with, which the visitor may edit.
	DemoModel, DemoRequest, InferPath string
}

// demoRequests are the demo's starting requests for the models HelixFlow
// ships (models/); another model starts from an empty inputs list the
// visitor fills in.
var demoRequests = map[string]string{
	"simple": `{
  "inputs": [
    {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32",
     "data": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]},
    {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32",
     "data": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]}
  ]
}`,
}

func (p *Portal) home(w http.ResponseWriter, r *http.Request, v *View) {
	v.Title, v.Nav = "", "home"
	v.Notice = noticeOf(r)
	d := homeData{}
	if p.cfg.Plans != nil {
		d.Plans = p.cfg.Plans()
	}
	if p.cfg.Demo != nil && p.cfg.DemoModel != "" {
		d.DemoModel = p.cfg.DemoModel
		d.InferPath = "/v2/models/" + url.PathEscape(p.cfg.DemoModel) + "/infer"
		d.DemoRequest = demoRequests[p.cfg.DemoModel]
		if d.DemoRequest == "" {
			d.DemoRequest = "{\n  \"inputs\": []\n}"
		}
	}
	v.Data = d
	p.render(w, http.StatusOK, "home", v)
}

// demoToken answers the demo's script (a same-origin POST with the CSRF
// field) with a short-lived token for the demo model:
// {"access_token", "token_type", "expires_in", "model"}.
func (p *Portal) demoToken(w http.ResponseWriter, r *http.Request, _ *View) {
	w.Header().Set("Content-Type", "application/json")
	if p.cfg.Demo == nil || p.cfg.DemoModel == "" {
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "not_found", "error_description": "the demo is off on this server"})
		return
	}
	if l := p.cfg.DemoLimit; l != nil {
		if src, ok := l.Source(r); ok {
			if allowed, retry := l.Allow(src); !allowed {
				w.Header().Set("Retry-After", sourcelimit.RetryAfter(retry))
				w.WriteHeader(http.StatusTooManyRequests)
				_ = json.NewEncoder(w).Encode(map[string]string{"error": "too_many_requests",
					"error_description": "too many demo tokens from your address; wait a few seconds"})
				return
			}
		}
	}
	tok, exp, err := p.cfg.Demo.DemoToken(r)
	if err != nil {
		p.log.Warn("portal: demo token not minted", "error", err)
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "temporarily_unavailable",
			"error_description": "the demo is unavailable right now; try again shortly"})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": exp, "model": p.cfg.DemoModel})
}
