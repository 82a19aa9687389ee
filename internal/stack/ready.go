package stack

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
)

// plainClient reaches the plaintext status and admin endpoints; no proxy
// (everything is on loopback).
var plainClient = &http.Client{Transport: &http.Transport{Proxy: nil}}

// TLSClient trusts the development CA and, when clientCert names a PKI
// pair, presents it (the workers require a client certificate). The PKI
// exists once Start began.
func (s *Stack) TLSClient(clientCert string) (*http.Client, error) {
	pool, err := s.CAPool()
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if clientCert != "" {
		c, err := tls.LoadX509KeyPair(s.Cert(clientCert))
		if err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: cfg}}, nil
}

// CAPool is the development CA as a trust pool.
func (s *Stack) CAPool() (*x509.CertPool, error) {
	b, err := os.ReadFile(s.CAFile())
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("stack: no certificate in %s", s.CAFile())
	}
	return pool, nil
}

// httpOK is ready when GET u answers 200.
func httpOK(c *http.Client, u string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := get(ctx, c, u)
		return err
	}
}

func get(ctx context.Context, c *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), nil
}

// redisPing is ready when Redis answers PING.
func redisPing(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		if _, err := io.WriteString(c, "PING\r\n"); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) != "+PONG" {
			return fmt.Errorf("redis answered %q", strings.TrimSpace(line))
		}
		return nil
	}
}

// pgReady is ready when Postgres accepts a connection.
func pgReady(dsn string) func(context.Context) error {
	return func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}
}

// EnvoyAdmin GETs an Envoy admin path ("/config_dump", "/clusters").
func (s *Stack) EnvoyAdmin(ctx context.Context, path string) (string, error) {
	return get(ctx, plainClient, s.EnvoyAdminURL+path)
}
