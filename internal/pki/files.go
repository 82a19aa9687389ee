package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/helixflow/helixflow/internal/atomicfile"
)

// errMissing: neither file of a pair exists (a first run, not a renewal).
var errMissing = errors.New("missing")

// loadPair reads a certificate and its key and checks that they belong
// together; the key must be ECDSA P-256.
func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	_, cerr := os.Stat(certFile)
	_, kerr := os.Stat(keyFile)
	if errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist) {
		return nil, nil, errMissing
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("unusable: %w", err)
	}
	if len(pair.Certificate) != 1 {
		return nil, nil, fmt.Errorf("%s holds %d certificates, want 1", filepath.Base(certFile), len(pair.Certificate))
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, nil, fmt.Errorf("%s is not an ECDSA P-256 key", filepath.Base(keyFile))
	}
	return pair.Leaf, key, nil
}

// checkCA says why cert cannot serve as the CA any more, or nil.
func checkCA(cert *x509.Certificate, opts Options) error {
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("not a CA certificate")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("not self-signed: %w", err)
	}
	return checkTime(cert, opts)
}

// checkLeaf says why cert no longer fits s under ca, or nil.
func checkLeaf(cert *x509.Certificate, ca *authority, s Spec, opts Options) error {
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots: ca.pool, CurrentTime: opts.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("not signed by the current CA: %w", err)
	}
	if err := checkTime(cert, opts); err != nil {
		return err
	}
	switch {
	case cert.Subject.CommonName != s.CommonName:
		return fmt.Errorf("common name %q, want %q", cert.Subject.CommonName, s.CommonName)
	case !sameSet(cert.DNSNames, s.DNSNames):
		return fmt.Errorf("DNS names %v, want %v", cert.DNSNames, s.DNSNames)
	case !sameSet(ipStrings(cert.IPAddresses), ipStrings(s.IPs)):
		return fmt.Errorf("IP addresses %v, want %v", cert.IPAddresses, s.IPs)
	case !sameSet(uriStrings(cert), specURIs(s)):
		return fmt.Errorf("URIs %v, want %v", cert.URIs, s.URIs)
	case cert.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(cert.ExtKeyUsage, extKeyUsages(s.Usage)):
		return fmt.Errorf("key usages differ from %s", s.Usage)
	}
	return nil
}

func checkTime(cert *x509.Certificate, opts Options) error {
	now := opts.Now()
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("not valid before %s", cert.NotBefore.Format(time.RFC3339))
	}
	if now.Add(opts.RenewBefore).After(cert.NotAfter) {
		return fmt.Errorf("expires %s", cert.NotAfter.Format(time.RFC3339))
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

func uriStrings(c *x509.Certificate) []string {
	out := make([]string, len(c.URIs))
	for i, u := range c.URIs {
		out[i] = u.String()
	}
	return out
}

func specURIs(s Spec) []string {
	out := make([]string, len(s.URIs))
	for i, u := range s.URIs {
		out[i] = u.String()
	}
	return out
}

// tightenKey makes an existing key file 0600 if it is looser.
func tightenKey(keyFile string) error {
	fi, err := os.Stat(keyFile)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return nil
}

// writePair writes the key (0600, PKCS #8) and then the certificate
// (0644), each atomically, so a reader never sees half a file; a crash in
// between leaves a mismatched pair, which the next Init reissues.
func writePair(certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := atomicfile.Write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	if err := atomicfile.Write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return nil
}
