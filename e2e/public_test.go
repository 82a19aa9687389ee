package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/mailtest"
	"github.com/helixflow/helixflow/internal/wire"
)

// checkPublicSurface: helix-authz's public surface answers on Envoy's
// listener (the gateway config's authz.public), one origin with the
// models: a person signs up at /api/v1/signup and the mailed link points
// at the gateway; a machine gets a token at /oauth2/token and infers with
// it on the same origin; the portal's page is served; none of it asks
// ext_authz (no token is needed to reach them).
func (s *stack) checkPublicSurface(t *testing.T, https *http.Client) {
	base := "https://" + s.gateway
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	email := fmt.Sprintf("public-%d@e2e.test", time.Now().UnixNano())
	body := `{"email":"` + email + `","password":"a long passphrase through Envoy"}`
	resp, err := https.Post(base+"/api/v1/signup", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /api/v1/signup through Envoy: %d %s", resp.StatusCode, b)
	}
	m, err := mailtest.NewClient(s.st.MailpitURL).WaitFor(ctx, email, "Confirm")
	if err != nil {
		t.Fatal(err)
	}
	link, err := url.Parse(mailtest.Link(m, "/"))
	if err != nil || link.Scheme+"://"+link.Host != base {
		t.Errorf("the mailed link %q is not on the gateway's origin %s (helix-authz --public-url)", mailtest.Link(m, "/"), base)
	}

	c := s.clients["all"]
	resp, err = https.PostForm(base+"/oauth2/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {c.id}, "client_secret": {c.secret}})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || tok.AccessToken == "" {
		t.Fatalf("POST /oauth2/token through Envoy: %d (%v)", resp.StatusCode, err)
	}
	if code, out, err := s.restInfer(ctx, https, sampleModel, tok.AccessToken, nil); err != nil || code != http.StatusOK {
		t.Fatalf("infer with the token from the gateway's /oauth2/token: %d %s (%v)", code, out, err)
	}

	for _, p := range []string{wire.PortalPrefix, "/.well-known/jwks.json"} {
		resp, err := https.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s through Envoy: %d %.200s", p, resp.StatusCode, b)
		}
		if p == wire.PortalPrefix && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: Content-Type %q, want the portal's page", p, resp.Header.Get("Content-Type"))
		}
	}
	// Not public: Envoy's 404, never helix-authz's other listeners.
	resp, err = https.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics through Envoy: %d, want 404", resp.StatusCode)
	}
}
