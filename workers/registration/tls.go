package registration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
)

// LoadClientTLS builds the mTLS configuration for talking to helix-xds: the
// CA bundle that signs helix-xds's certificate, and the worker's client
// certificate and key. The files are read now, so that a bad file fails at
// start; the certificate and key are read again at each handshake, so a
// rotated pair is used on the next connection without a restart (the last
// good pair stays in use if a read fails mid-rotation).
func LoadClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate", caFile)
	}
	first, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate %s / key %s: %w", certFile, keyFile, err)
	}
	var (
		mu   sync.Mutex
		last = &first
	)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
				last = &c
			}
			return last, nil
		},
	}, nil
}
