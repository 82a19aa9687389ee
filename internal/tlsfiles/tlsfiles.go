// Package tlsfiles builds the servers' TLS configuration from PEM files, the
// same way for every binary: the certificate is re-read on each handshake
// so that rotated files take effect without a restart, and a client CA,
// when given, makes client certificates mandatory (mTLS).
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// ServerConfig returns a TLS 1.2+ server configuration serving certFile and
// keyFile, requiring client certificates signed by clientCAFile when that
// is not empty. The files are checked once now.
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	load := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load TLS certificate: %w", err)
		}
		return &c, nil
	}
	if _, err := load(nil); err != nil {
		return nil, err
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: load}
	if clientCAFile == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client CA %s holds no PEM certificate", clientCAFile)
	}
	conf.ClientCAs, conf.ClientAuth = pool, tls.RequireAndVerifyClientCert
	return conf, nil
}
