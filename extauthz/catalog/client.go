package catalog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/internal/identity"
	catalogv1 "github.com/helixflow/helixflow/proto/catalog/v1"
)

// CacheTTL is how long an answer of helix-xds is served before the next
// request asks again: short, so that a model loaded or gone shows within
// seconds, long enough that a busy portal asks helix-xds about once per
// TTL whatever its traffic.
const CacheTTL = 2 * time.Second

// fetchTimeout bounds one ListModels call.
const fetchTimeout = 5 * time.Second

// maxAnswerBytes bounds helix-xds's answer (each model's config is at most
// 64 KiB; thousands of models fit).
const maxAnswerBytes = 64 << 20

// ErrUnavailable: helix-xds could not be asked, or refused (its error is
// wrapped).
var ErrUnavailable = errors.New("catalog: the model catalogue cannot be read now")

// Source lists the whole catalogue (the Client; a fake in tests).
type Source interface {
	Models(ctx context.Context) ([]Model, error)
}

// DialConfig says how to reach helix-xds's Catalog service: its gRPC
// address and the mTLS files (helix-authz's client certificate, which must
// carry identity.Authz, and the CA that signed helix-xds's certificate).
type DialConfig struct {
	Address                   string
	CAFile, CertFile, KeyFile string
	// ServerName is the name helix-xds's certificate must carry (SNI);
	// "": the host of Address.
	ServerName string
}

// Validate names the first missing field.
func (c DialConfig) Validate() error {
	for _, f := range [][2]string{{"address", c.Address}, {"CA file", c.CAFile}, {"certificate file", c.CertFile}, {"key file", c.KeyFile}} {
		if f[1] == "" {
			return fmt.Errorf("catalog: helix-xds's %s is required", f[0])
		}
	}
	return nil
}

// Client asks helix-xds for the catalogue and keeps the answer CacheTTL.
type Client struct {
	rpc   catalogv1.CatalogClient
	conn  *grpc.ClientConn // nil when the caller owns the connection
	ttl   time.Duration
	now   func() time.Time
	group singleflight.Group

	mu     sync.Mutex
	models []Model
	at     time.Time
}

// Dial returns a Client of helix-xds at cfg.Address. The files are read
// now, so that a bad one fails the start; the certificate and key are read
// again at each handshake (a rotated pair is used on the next connection).
// No connection is made until the first call.
func Dial(cfg DialConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conf, err := clientTLS(cfg)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.Address, grpc.WithTransportCredentials(credentials.NewTLS(conf)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxAnswerBytes)))
	if err != nil {
		return nil, fmt.Errorf("catalog: helix-xds address %q: %w", cfg.Address, err)
	}
	c := New(conn)
	c.conn = conn
	return c, nil
}

// New returns a Client over an existing connection (the caller closes it).
func New(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: catalogv1.NewCatalogClient(conn), ttl: CacheTTL, now: time.Now}
}

// Close closes the connection Dial made.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Models returns the whole catalogue, sorted by name: the cached answer
// when it is younger than CacheTTL, else helix-xds's, fetched once for all
// the callers that wait for it. The slice is shared: callers must not
// change it. An error wraps ErrUnavailable.
func (c *Client) Models(ctx context.Context) ([]Model, error) {
	c.mu.Lock()
	if c.models != nil && c.now().Sub(c.at) < c.ttl {
		m := c.models
		c.mu.Unlock()
		return m, nil
	}
	c.mu.Unlock()
	ch := c.group.DoChan("", func() (any, error) {
		// Not the first caller's context: its cancellation must not fail
		// the others waiting on the same call.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		resp, err := c.rpc.ListModels(ctx, &catalogv1.ListModelsRequest{})
		if err != nil {
			return nil, fmt.Errorf("%w: helix-xds: %w", ErrUnavailable, err)
		}
		models := fromProto(resp.GetModels())
		c.mu.Lock()
		c.models, c.at = models, c.now()
		c.mu.Unlock()
		return models, nil
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]Model), nil
	}
}

// clientTLS is helix-authz's side of the mTLS to helix-xds. Beyond the CA
// and the server name, the server must be helix-xds's identity: any other
// component's certificate comes from the same CA.
func clientTLS(cfg DialConfig) (*tls.Config, error) {
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("catalog: helix-xds CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("catalog: helix-xds CA file %s: no PEM certificate in it", cfg.CAFile)
	}
	first, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("catalog: client certificate %s / key %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	var (
		mu   sync.Mutex
		last = &first
	)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
		ServerName: cfg.ServerName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			if c, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err == nil {
				last = &c
			}
			return last, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := identity.Require(cs, identity.XDS)
			return err
		},
	}, nil
}
