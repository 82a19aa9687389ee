package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/helixflow/helixflow/internal/netaddr"
)

// Client calls the admin API (helixctl uses it).
type Client struct {
	BaseURL string
	// Token is the admin token or a platform admin's access token.
	Token string
	// Operator is sent as the Helix-Operator header: the person acting
	// (NewClient sets DefaultOperator()).
	Operator string
	HTTP     *http.Client
}

// DefaultOperator names the person running this program for the
// Helix-Operator header: $HELIX_OPERATOR, else the OS user@host.
func DefaultOperator() string {
	if op := strings.TrimSpace(os.Getenv("HELIX_OPERATOR")); op != "" {
		return op
	}
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}

// APIError is an error answer of the admin API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// NewClient checks the URL and token and returns a Client. It refuses
// plain http to anything but a loopback host.
func NewClient(baseURL, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q must be http(s)://host[:port]", baseURL)
	}
	if u.Scheme == "http" && !netaddr.LoopbackHost(u.Hostname()) {
		// The token would cross the network in clear.
		return nil, fmt.Errorf("admin URL %q: plain http is only for a loopback admin API; use https:// to send the admin token to another host", baseURL)
	}
	if token == "" {
		return nil, errors.New("no admin token: set --admin-token-file or HELIX_ADMIN_TOKEN")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, Operator: DefaultOperator(), HTTP: hc}, nil
}

// do sends body as JSON and decodes the answer into out, or copies it to
// out when out is an io.Writer.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if c.Operator != "" {
		req.Header.Set(OperatorHeader, c.Operator)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	if w, ok := out.(io.Writer); ok && resp.StatusCode < 300 {
		// A stream (an export): copied as it comes, never held whole; a
		// connection the server cut midway is an error here.
		if _, err := io.Copy(w, resp.Body); err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("admin API: bad response: %w", err)
	}
	return nil
}

// CreateClient creates a client; the result carries its secret.
func (c *Client) CreateClient(ctx context.Context, req ClientRequest) (*ClientView, error) {
	return c.CreateAppClient(ctx, req, AppFields{})
}

// CreateAppClient creates a client people sign in to (app: public,
// redirect URIs, grant types; zero: a client-credentials client).
func (c *Client) CreateAppClient(ctx context.Context, req ClientRequest, app AppFields) (*ClientView, error) {
	var v ClientView
	body := struct {
		ClientRequest
		AppFields
	}{req, app}
	return &v, c.do(ctx, http.MethodPost, "/admin/v1/clients", body, &v)
}

// ListClients lists clients.
func (c *Client) ListClients(ctx context.Context) ([]ClientView, error) {
	var v []ClientView
	return v, c.do(ctx, http.MethodGet, "/admin/v1/clients", nil, &v)
}

// GetClient reads one client.
func (c *Client) GetClient(ctx context.Context, id string) (*ClientView, error) {
	var v ClientView
	return &v, c.do(ctx, http.MethodGet, "/admin/v1/clients/"+url.PathEscape(id), nil, &v)
}

// UpdateClient changes the fields set in req.
func (c *Client) UpdateClient(ctx context.Context, id string, req ClientRequest) (*ClientView, error) {
	var v ClientView
	return &v, c.do(ctx, http.MethodPatch, "/admin/v1/clients/"+url.PathEscape(id), req, &v)
}

// DeleteClient deletes a client and its API keys.
func (c *Client) DeleteClient(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/admin/v1/clients/"+url.PathEscape(id), nil, nil)
}

// RotateSecret gives a client a new secret; the result carries it.
func (c *Client) RotateSecret(ctx context.Context, id string) (*ClientView, error) {
	var v ClientView
	return &v, c.do(ctx, http.MethodPost, "/admin/v1/clients/"+url.PathEscape(id)+"/rotate-secret", nil, &v)
}

// CreateAPIKey creates an API key; the result carries the key.
func (c *Client) CreateAPIKey(ctx context.Context, req APIKeyRequest) (*APIKeyView, error) {
	var v APIKeyView
	return &v, c.do(ctx, http.MethodPost, "/admin/v1/apikeys", req, &v)
}

// ListAPIKeys lists API keys, of one client when clientID is set.
func (c *Client) ListAPIKeys(ctx context.Context, clientID string) ([]APIKeyView, error) {
	var v []APIKeyView
	path := "/admin/v1/apikeys"
	if clientID != "" {
		path += "?client_id=" + url.QueryEscape(clientID)
	}
	return v, c.do(ctx, http.MethodGet, path, nil, &v)
}

// RevokeAPIKey revokes an API key by id or prefix.
func (c *Client) RevokeAPIKey(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/admin/v1/apikeys/"+url.PathEscape(id), nil, nil)
}

// RotateKeys creates the next signing key; it returns its kid.
func (c *Client) RotateKeys(ctx context.Context) (string, error) {
	var v struct {
		KID string `json:"kid"`
	}
	return v.KID, c.do(ctx, http.MethodPost, "/admin/v1/keys/rotate", nil, &v)
}

// ListUsers lists up to limit people (0: the server's default) whose id
// sorts after after ("" for the first page).
func (c *Client) ListUsers(ctx context.Context, after string, limit int) ([]UserView, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	path := "/admin/v1/users"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var v []UserView
	return v, c.do(ctx, http.MethodGet, path, nil, &v)
}

// GetUser reads one person's account.
func (c *Client) GetUser(ctx context.Context, id string) (*UserView, error) {
	var v UserView
	return &v, c.do(ctx, http.MethodGet, "/admin/v1/users/"+url.PathEscape(id), nil, &v)
}

// SetPlatformAdmin grants or withdraws a person's platform-admin flag.
func (c *Client) SetPlatformAdmin(ctx context.Context, id string, admin bool) (*UserView, error) {
	var v UserView
	return &v, c.do(ctx, http.MethodPatch, "/admin/v1/users/"+url.PathEscape(id), PlatformAdminRequest{PlatformAdmin: &admin}, &v)
}

// ListOrgs lists organizations.
func (c *Client) ListOrgs(ctx context.Context) ([]OrgView, error) {
	var v []OrgView
	return v, c.do(ctx, http.MethodGet, "/admin/v1/orgs", nil, &v)
}

// GetOrg reads one organization.
func (c *Client) GetOrg(ctx context.Context, id string) (*OrgView, error) {
	var v OrgView
	return &v, c.do(ctx, http.MethodGet, "/admin/v1/orgs/"+url.PathEscape(id), nil, &v)
}

// CreateOrg creates an organization with the default policy.
func (c *Client) CreateOrg(ctx context.Context, req OrgRequest) (*OrgView, error) {
	var v OrgView
	return &v, c.do(ctx, http.MethodPost, "/admin/v1/orgs", req, &v)
}

// SetOrgPolicy replaces an organization's policy.
func (c *Client) SetOrgPolicy(ctx context.Context, id string, req PolicyRequest) (*OrgView, error) {
	var v OrgView
	return &v, c.do(ctx, http.MethodPut, "/admin/v1/orgs/"+url.PathEscape(id)+"/policy", req, &v)
}
