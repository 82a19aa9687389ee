package helixflow

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// DefaultRefreshBefore is how long before its expiry a cached access token
// is replaced. It is a fixed margin rather than a fraction so that a call
// that starts with the token still has that long to reach the gateway.
const DefaultRefreshBefore = 10 * time.Second

// APIKeyHeader is the header an API key travels in (gRPC metadata and HTTP).
const APIKeyHeader = "x-api-key"

// Credentials sign every gRPC call (grpc.PerRPCCredentials) and every REST
// call of a Client with the same metadata.
type Credentials interface {
	credentials.PerRPCCredentials
}

// ClientCredentialsConfig describes an OAuth2 client of helix-authz.
type ClientCredentialsConfig struct {
	ClientID     string
	ClientSecret string
	// TokenURL is helix-authz's token endpoint (HELIX_TOKEN_URL), e.g.
	// https://authz.example/oauth2/token.
	TokenURL string
	// Scopes asked for; empty asks for all of the client's scopes.
	Scopes []string
	// CAFile verifies the token endpoint's certificate (PEM); empty uses
	// the system's roots. HTTPClient, when set, is used instead.
	CAFile     string
	HTTPClient *http.Client
	// RefreshBefore replaces a token this long before it expires
	// (DefaultRefreshBefore when zero).
	RefreshBefore time.Duration
}

// tokenCredentials sends "authorization: Bearer <token>" from a token
// source that caches and refreshes.
type tokenCredentials struct {
	src oauth2.TokenSource
}

// NewClientCredentials returns credentials that fetch access tokens with the
// client credentials grant (client_secret_basic) and refresh them
// RefreshBefore their expiry, so a job of any length never sends an expired
// token. Concurrent calls share one token and one refresh.
func NewClientCredentials(cfg ClientCredentialsConfig) (Credentials, error) {
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("helixflow: client credentials need a client id and secret (HELIX_CLIENT_ID, HELIX_CLIENT_SECRET)")
	}
	if cfg.TokenURL == "" {
		return nil, errors.New("helixflow: client credentials need the token URL (HELIX_TOKEN_URL)")
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tlsCfg, err := tlsConfig(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment}}
	}
	cc := &clientcredentials.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		TokenURL:     cfg.TokenURL,
		Scopes:       cfg.Scopes,
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	before := cfg.RefreshBefore
	if before <= 0 {
		before = DefaultRefreshBefore
	}
	// The context only carries the HTTP client for every later refresh.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	// ReuseTokenSourceWithExpiry takes over cc.TokenSource's own cache (and
	// its fixed 10 s margin) rather than stacking a second one on it.
	return NewTokenCredentials(oauth2.ReuseTokenSourceWithExpiry(nil, cc.TokenSource(ctx), before)), nil
}

// NewTokenCredentials sends the tokens of src as bearer tokens. src should
// cache (oauth2.ReuseTokenSource); a bare source is asked on every call.
func NewTokenCredentials(src oauth2.TokenSource) Credentials {
	return &tokenCredentials{src: src}
}

// GetRequestMetadata implements credentials.PerRPCCredentials. The token
// is fetched (when due) within ctx's deadline. A failure to reach the token
// endpoint is UNAVAILABLE (the retry policy retries it); a refusal
// (invalid_client) is UNAUTHENTICATED.
func (c *tokenCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	type result struct {
		tok *oauth2.Token
		err error
	}
	ch := make(chan result, 1)
	go func() {
		t, err := c.src.Token()
		ch <- result{t, err}
	}()
	select {
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case r := <-ch:
		if r.err != nil {
			return nil, tokenError(r.err)
		}
		return map[string]string{"authorization": "Bearer " + r.tok.AccessToken}, nil
	}
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: a
// bearer token is never sent in clear.
func (c *tokenCredentials) RequireTransportSecurity() bool { return true }

// tokenError classifies a failed token fetch as a gRPC status.
func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		code := codes.Unauthenticated
		if re.Response.StatusCode >= 500 || re.Response.StatusCode == http.StatusTooManyRequests {
			code = codes.Unavailable
		}
		return status.Errorf(code, "helixflow: fetch access token: %v", err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return status.Errorf(codes.Unavailable, "helixflow: fetch access token: %v", err)
	}
	return status.Errorf(codes.Unauthenticated, "helixflow: fetch access token: %v", err)
}

// apiKeyCredentials sends an API key in x-api-key.
type apiKeyCredentials struct{ key string }

// NewAPIKey returns credentials that send key (hx_...) in x-api-key. API
// keys do not expire unless created with an expiry; nothing is refreshed.
func NewAPIKey(key string) (Credentials, error) {
	if key == "" {
		return nil, errors.New("helixflow: empty API key (HELIX_API_KEY)")
	}
	return &apiKeyCredentials{key: key}, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (k *apiKeyCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{APIKeyHeader: k.key}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (k *apiKeyCredentials) RequireTransportSecurity() bool { return true }

// tlsConfig verifies servers with the CA in caFile (PEM), or the system's
// roots when caFile is empty.
func tlsConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("helixflow: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("helixflow: CA file %s holds no PEM certificate", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}
