// Package tlsfiles builds the servers' TLS configuration from PEM files, the
// same way for every binary: the certificate, its key and the client CA are
// read again when their files change (checked on each handshake), so that
// rotated files (cert-manager's, a Kubernetes secret volume's symlink swap)
// take effect without a restart; a client CA, when given, makes client
// certificates mandatory (mTLS), and AcceptPeers narrows them to the
// identities (internal/identity) the listener serves.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/internal/identity"
)

// Option adds to ServerConfig's configuration.
type Option func(*tls.Config)

// AcceptPeers admits only clients whose verified certificate carries one of
// the identities ids (internal/identity's SPIFFE IDs); any other client's
// handshake fails. It applies with a client CA only (without one, no
// client certificate is asked for).
func AcceptPeers(ids ...string) Option {
	return func(c *tls.Config) { c.VerifyConnection = identity.PeerVerifier(ids...) }
}

// ServerConfig returns a TLS 1.2+ server configuration serving certFile and
// keyFile, requiring client certificates signed by clientCAFile when that
// is not empty. The files must be readable now; later, a change that does
// not load (a rotation caught half written, a key that does not match the
// certificate) keeps the last good files in force until the next change.
func ServerConfig(certFile, keyFile, clientCAFile string, opts ...Option) (*tls.Config, error) {
	f := &files{certFile: certFile, keyFile: keyFile, caFile: clientCAFile}
	if err := f.load(); err != nil {
		return nil, err
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return f.current().cert, nil
	}}
	if clientCAFile == "" {
		return conf, nil
	}
	conf.ClientCAs, conf.ClientAuth = f.current().clientCAs, tls.RequireAndVerifyClientCert
	for _, o := range opts {
		o(conf)
	}
	// The client CA is part of the config, not of the certificate: each
	// handshake gets a copy of conf (as the caller left it: ALPN, ...)
	// holding the current one.
	conf.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := conf.Clone()
		c.GetConfigForClient = nil
		c.ClientCAs = f.current().clientCAs
		return c, nil
	}
	return conf, nil
}

// files holds what was last loaded from the files and when they changed.
type files struct {
	certFile, keyFile, caFile string

	mu     sync.Mutex
	stamps [3]stamp // of certFile, keyFile, caFile when last loaded or tried
	loaded state
}

type state struct {
	cert      *tls.Certificate
	clientCAs *x509.CertPool
}

// stamp identifies a file's content cheaply: a rewrite or a swapped
// symlink changes one of them.
type stamp struct {
	mod  time.Time
	size int64
	err  bool
}

func stampOf(path string) stamp {
	if path == "" {
		return stamp{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{err: true}
	}
	return stamp{mod: fi.ModTime(), size: fi.Size()}
}

// current is the loaded state, loaded again first when a file changed.
func (f *files) current() state {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := [3]stamp{stampOf(f.certFile), stampOf(f.keyFile), stampOf(f.caFile)}
	if now != f.stamps {
		f.stamps = now
		if st, err := f.read(); err == nil {
			f.loaded = st
		}
	}
	return f.loaded
}

// load reads the files, failing when they do not load.
func (f *files) load() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stamps = [3]stamp{stampOf(f.certFile), stampOf(f.keyFile), stampOf(f.caFile)}
	st, err := f.read()
	if err != nil {
		return err
	}
	f.loaded = st
	return nil
}

func (f *files) read() (state, error) {
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return state{}, fmt.Errorf("load TLS certificate: %w", err)
	}
	st := state{cert: &c}
	if f.caFile == "" {
		return st, nil
	}
	pem, err := os.ReadFile(f.caFile)
	if err != nil {
		return state{}, fmt.Errorf("client CA: %w", err)
	}
	st.clientCAs = x509.NewCertPool()
	if !st.clientCAs.AppendCertsFromPEM(pem) {
		return state{}, fmt.Errorf("client CA %s: %w", f.caFile, errNoPEM)
	}
	return st, nil
}

var errNoPEM = errors.New("holds no PEM certificate")

// ExpiryMetricName is the gauge ExpiryMetric exports, named after Envoy's
// envoy_*_ssl_certificate_expiration_unix_time_seconds so that one alert
// reads both alike.
const ExpiryMetricName = "helix_tls_certificate_expiration_unix_time_seconds"

// ExpiryMetric is a gauge of when the certificate conf serves now expires,
// labelled listener; conf must come from ServerConfig. Read at scrape time,
// it follows rotations.
func ExpiryMetric(conf *tls.Config, listener string) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        ExpiryMetricName,
		Help:        "When the TLS certificate this process serves on a listener expires (Unix time): it is read again when its file changes.",
		ConstLabels: prometheus.Labels{"listener": listener},
	}, func() float64 {
		c, err := conf.GetCertificate(nil)
		if err != nil || c == nil || c.Leaf == nil {
			return 0
		}
		return float64(c.Leaf.NotAfter.Unix())
	})
}
