package stack

// make run's part: one stack per checkout, the demo client, waiting until
// Envoy serves every model, .helix/local.env and the printed examples.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/internal/atomicfile"
	"github.com/helixflow/helixflow/internal/wire"
)

// Lock takes Dir/run.lock, so one stack runs per state folder; it is
// released when the returned file is closed or the process ends (children
// do not inherit it: Go opens files close-on-exec).
func Lock(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "run.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another stack is running on %s (Ctrl-C it first): %w", dir, err)
	}
	return f, nil
}

// Demo is the demo client of make run: plan standard, scopes
// models:infer models:read, every model.
type Demo struct{ ID, Secret string }

var demoScopes = []string{"models:infer", "models:read"}

const demoPlan = "standard"

// DemoClient returns the demo client kept in Dir/demo-client.json, made
// (again) when there is none or helix-authz no longer knows it; a kept one
// gets today's plan and scopes.
func (s *Stack) DemoClient(ctx context.Context) (Demo, error) {
	ac, err := admin.NewClient(s.AdminURL(), s.AdminToken, nil)
	if err != nil {
		return Demo{}, err
	}
	path := filepath.Join(s.opts.Dir, "demo-client.json")
	var kept admin.ClientView
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &kept) == nil && kept.ClientID != "" && kept.ClientSecret != "" {
		if _, err := ac.GetClient(ctx, kept.ClientID); err == nil {
			plan, scopes, models := demoPlan, demoScopes, []string{"*"}
			if _, err := ac.UpdateClient(ctx, kept.ClientID, admin.ClientRequest{Plan: &plan, Scopes: &scopes, Models: &models}); err != nil {
				return Demo{}, fmt.Errorf("stack: update the demo client: %w", err)
			}
			return Demo{ID: kept.ClientID, Secret: kept.ClientSecret}, nil
		}
	}
	name, plan, scopes, models := "demo", demoPlan, demoScopes, []string{"*"}
	c, err := ac.CreateClient(ctx, admin.ClientRequest{Name: &name, Plan: &plan, Scopes: &scopes, Models: &models})
	if err != nil {
		return Demo{}, fmt.Errorf("stack: create the demo client: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return Demo{}, err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return Demo{}, fmt.Errorf("stack: %w", err)
	}
	return Demo{ID: c.ClientID, Secret: c.ClientSecret}, nil
}

// AdminURL is helix-authz's admin API.
func (s *Stack) AdminURL() string { return "http://" + Addr(s.Ports.Admin) }

// TokenURL is helix-authz's OAuth2 token endpoint.
func (s *Stack) TokenURL() string { return s.Issuer + "/oauth2/token" }

// Token is a client-credentials access token and how long it lives.
type Token struct {
	AccessToken string
	Lifetime    time.Duration
}

// Token gets a client-credentials token for a client from helix-authz:
// make run's demo client, the tests' and the benchmarks' clients.
func (s *Stack) Token(ctx context.Context, id, secret string) (Token, error) {
	c, err := s.TLSClient("")
	if err != nil {
		return Token{}, err
	}
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.TokenURL(), strings.NewReader(form))
	if err != nil {
		return Token{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := c.Do(req)
	if err != nil {
		return Token{}, fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		return Token{}, fmt.Errorf("token for %s: HTTP %d: %.300s", id, resp.StatusCode, body)
	}
	return Token{AccessToken: tr.AccessToken, Lifetime: time.Duration(tr.ExpiresIn) * time.Second}, nil
}

// Models are the sample models (models/*/config.pbtxt).
func (s *Stack) Models() ([]string, error) {
	files, err := filepath.Glob(filepath.Join(s.modelsDir(), "*", "config.pbtxt"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		out = append(out, filepath.Base(filepath.Dir(f)))
	}
	slices.Sort(out)
	return out, nil
}

// WaitServing waits until Envoy routes to every self-registering worker
// (healthy in the default pool) and every sample model answers ready
// through Envoy with token.
func (s *Stack) WaitServing(ctx context.Context, token string) error {
	registering := 0
	for _, w := range s.opts.Workers {
		if !w.NoRegister {
			registering++
		}
	}
	healthy := regexp.MustCompile(`(?m)^helix-default-grpc::127\.0\.0\.1:[0-9]+::health_flags::healthy$`)
	if err := s.poll(ctx, Envoy, fmt.Sprintf("%d healthy workers in Envoy", registering), 60*time.Second, func(ctx context.Context) error {
		body, err := s.EnvoyAdmin(ctx, "/clusters")
		if err != nil {
			return err
		}
		if n := len(healthy.FindAllString(body, -1)); n != registering {
			return fmt.Errorf("%d healthy", n)
		}
		return nil
	}); err != nil {
		return err
	}
	models, err := s.Models()
	if err != nil {
		return err
	}
	c, err := s.TLSClient("")
	if err != nil {
		return err
	}
	for _, m := range models {
		if err := s.poll(ctx, Envoy, "model "+m+" ready through Envoy", 30*time.Second, func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.GatewayURL()+wire.RESTModelPath(m, "", "ready"), nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return errors.New(resp.Status)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// poll checks cond every 200 ms until it holds or d passes; the error
// names what was awaited and the end of the process's log.
func (s *Stack) poll(ctx context.Context, proc, what string, d time.Duration, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		err := cond(cctx)
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			tail := ""
			if p := s.Proc(proc); p != nil {
				tail = fmt.Sprintf("; the end of %s:\n%s", p.LogPath(), p.Tail(20))
			}
			return fmt.Errorf("%s: not within %v (last: %v)%s", what, d, err, tail)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// GatewayURL is Envoy's listener for REST clients; GatewayAddr for gRPC.
func (s *Stack) GatewayURL() string  { return "https://" + s.GatewayAddr() }
func (s *Stack) GatewayAddr() string { return Addr(s.Ports.Gateway) }

// PortalURL is the developer portal, which Envoy serves from helix-authz's
// public port (the gateway config's authz.public).
func (s *Stack) PortalURL() string { return s.GatewayURL() + wire.PortalPrefix }

// WriteLocalEnv writes Dir/local.env (0600, shell syntax: `source` it):
// the addresses and the demo client's credentials.
func (s *Stack) WriteLocalEnv(demo Demo) error {
	var b strings.Builder
	b.WriteString("# Written by helix-stack (make run); valid while it runs. Shell syntax: source it.\n")
	for _, kv := range [][2]string{
		{"HELIX_GRPC_ADDR", s.GatewayAddr()},
		{"HELIX_HTTPS_URL", s.GatewayURL()},
		{"HELIX_CA_FILE", s.CAFile()},
		{"HELIX_TOKEN_URL", s.TokenURL()},
		{"HELIX_ISSUER", s.Issuer},
		{"HELIX_PORTAL_URL", s.PortalURL()},
		{"HELIX_CLIENT_ID", demo.ID},
		{"HELIX_CLIENT_SECRET", demo.Secret},
		{"HELIX_ADMIN_URL", s.AdminURL()},
		{"HELIX_ADMIN_TOKEN", s.AdminToken},
		{"HELIX_DATABASE_URL", s.DatabaseURL},
		{"HELIX_XDS_STATUS_URL", s.XDSStatusURL()},
		{"HELIX_ENVOY_ADMIN_URL", s.EnvoyAdminURL},
		{"HELIX_PROMETHEUS_URL", s.PrometheusURL()},
		{"HELIX_ALERTMANAGER_URL", "http://" + Addr(s.Ports.Alertmanager)},
		{"HELIX_MAILPIT_URL", s.MailpitURL},
		{"HELIX_JAEGER_URL", s.jaegerEnv()},
	} {
		if kv[1] == "" {
			continue
		}
		fmt.Fprintf(&b, "export %s=%s\n", kv[0], shellQuote(kv[1]))
	}
	if err := atomicfile.Write(filepath.Join(s.opts.Dir, "local.env"), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	return nil
}

// jaegerEnv is HELIX_JAEGER_URL's value: Jaeger's UI and query API, or
// nothing without tracing.
func (s *Stack) jaegerEnv() string {
	if !s.opts.Tracing {
		return ""
	}
	return s.JaegerURL()
}

// shellQuote quotes v for a POSIX shell, leaving plain words as they are.
func shellQuote(v string) string {
	if v != "" && strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:@%+=,") == "" {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}
