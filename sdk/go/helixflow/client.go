package helixflow

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/helixflow/helixflow/sdk/go/inference"
	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
)

// Options configure NewClient. Credentials is required; the rest have
// defaults.
type Options struct {
	// Credentials sign every call: NewClientCredentials or NewAPIKey.
	Credentials Credentials
	// CAFile verifies the gateway's certificate (PEM; HELIX_CA_FILE); empty
	// uses the system's roots. TLSConfig, when set, is used instead.
	CAFile    string
	TLSConfig *tls.Config
	// RESTURL is the base of the REST calls (HELIX_HTTPS_URL); empty:
	// https://<the gRPC address>, the gateway serves both.
	RESTURL string
	// Retry is the policy of gRPC and REST calls (zero value: the
	// defaults); MaxAttempts 1 turns retries off.
	Retry RetryPolicy
	// HTTPClient makes the REST calls; nil: one with the TLS settings
	// above and a 30 s timeout.
	HTTPClient *http.Client
	// DialOptions are added after the SDK's own.
	DialOptions []grpc.DialOption
}

// Client is a connection to the gateway: KServe v2 inference over gRPC
// (Inference, with the credentials and retries) and the REST calls.
type Client struct {
	// Inference is the KServe v2 gRPC service (ModelInfer, ModelMetadata,
	// ServerLive, ...). Its unary calls are retried as Options.Retry says.
	Inference inference.GRPCInferenceServiceClient

	conn    *grpc.ClientConn
	creds   Credentials
	retry   RetryPolicy
	http    *http.Client
	restURL string
}

// NewClient connects to the gateway at addr (host:port, HELIX_GRPC_ADDR)
// over TLS. Like grpc.NewClient it does not dial yet: the first call does.
func NewClient(addr string, opts Options) (*Client, error) {
	if addr == "" {
		return nil, errors.New("helixflow: empty gateway address (HELIX_GRPC_ADDR)")
	}
	if opts.Credentials == nil {
		return nil, errors.New("helixflow: no credentials: use NewClientCredentials or NewAPIKey")
	}
	tlsCfg := opts.TLSConfig
	if tlsCfg == nil {
		var err error
		if tlsCfg, err = tlsConfig(opts.CAFile); err != nil {
			return nil, err
		}
	}
	retry := opts.Retry.withDefaults()
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(grpccreds.NewTLS(tlsCfg)),
		grpc.WithPerRPCCredentials(opts.Credentials),
		grpc.WithChainUnaryInterceptor(UnaryRetryInterceptor(retry)),
	}, opts.DialOptions...)
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("helixflow: connect to %s: %w", addr, err)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: tlsCfg.Clone(), Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true,
		}}
	}
	rest := opts.RESTURL
	if rest == "" {
		rest = "https://" + addr
	}
	return &Client{
		Inference: inference.NewGRPCInferenceServiceClient(conn),
		conn:      conn,
		creds:     opts.Credentials,
		retry:     retry,
		http:      hc,
		restURL:   strings.TrimRight(rest, "/"),
	}, nil
}

// Conn is the underlying gRPC connection, for other services or streams
// (streams are not retried).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the gRPC connection.
func (c *Client) Close() error { return c.conn.Close() }

// Env holds the HELIX_* variables that `make run` writes to local.env.
type Env struct {
	GRPCAddr     string // HELIX_GRPC_ADDR
	HTTPSURL     string // HELIX_HTTPS_URL
	CAFile       string // HELIX_CA_FILE
	TokenURL     string // HELIX_TOKEN_URL
	ClientID     string // HELIX_CLIENT_ID
	ClientSecret string // HELIX_CLIENT_SECRET
	APIKey       string // HELIX_API_KEY
}

// EnvFromOS reads Env from the process's environment.
func EnvFromOS() Env {
	return Env{
		GRPCAddr:     os.Getenv("HELIX_GRPC_ADDR"),
		HTTPSURL:     os.Getenv("HELIX_HTTPS_URL"),
		CAFile:       os.Getenv("HELIX_CA_FILE"),
		TokenURL:     os.Getenv("HELIX_TOKEN_URL"),
		ClientID:     os.Getenv("HELIX_CLIENT_ID"),
		ClientSecret: os.Getenv("HELIX_CLIENT_SECRET"),
		APIKey:       os.Getenv("HELIX_API_KEY"),
	}
}

// Credentials are e's API key when it has one, else its client
// credentials.
func (e Env) Credentials() (Credentials, error) {
	if e.APIKey != "" {
		return NewAPIKey(e.APIKey)
	}
	return NewClientCredentials(ClientCredentialsConfig{
		ClientID: e.ClientID, ClientSecret: e.ClientSecret, TokenURL: e.TokenURL, CAFile: e.CAFile,
	})
}

// NewClientFromEnv is NewClient configured from the environment (EnvFromOS):
// HELIX_GRPC_ADDR, HELIX_HTTPS_URL, HELIX_CA_FILE and either HELIX_API_KEY
// or HELIX_CLIENT_ID, HELIX_CLIENT_SECRET and HELIX_TOKEN_URL.
func NewClientFromEnv() (*Client, error) {
	e := EnvFromOS()
	creds, err := e.Credentials()
	if err != nil {
		return nil, err
	}
	return NewClient(e.GRPCAddr, Options{Credentials: creds, CAFile: e.CAFile, RESTURL: e.HTTPSURL})
}
