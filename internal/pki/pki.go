// Package pki makes the development PKI of a local HelixFlow: one CA and
// the server and client certificates the components present to each other
// (Envoy, helix-xds, helix-authz, the workers). Keys are ECDSA P-256.
//
// Init is idempotent: a certificate that is still valid for its spec (its
// chain verifies, its key matches, its names and usages are the spec's, it
// is not about to expire) is kept; anything else is issued again. A new CA
// therefore reissues every certificate.
//
// This is for development and tests; production certificates come from the
// operator's own CA.
package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Sentinel errors.
var (
	// ErrSpec: a certificate spec is unusable (the error names the field).
	ErrSpec = errors.New("invalid certificate spec")
	// ErrWrite: a file could not be written.
	ErrWrite = errors.New("cannot write PKI file")
)

// Usage is what a certificate is for; the values combine.
type Usage int

const (
	// ServerAuth: a TLS server certificate (extended key usage serverAuth).
	ServerAuth Usage = 1 << iota
	// ClientAuth: a TLS client certificate (extended key usage clientAuth).
	ClientAuth
)

func (u Usage) String() string {
	switch u {
	case ServerAuth:
		return "server"
	case ClientAuth:
		return "client"
	case ServerAuth | ClientAuth:
		return "server+client"
	}
	return fmt.Sprintf("Usage(%d)", int(u))
}

// Defaults of Options.
const (
	// DefaultCALifetime: ten years, so that a developer's trust in the
	// local CA outlives many leaf renewals.
	DefaultCALifetime = 10 * 365 * 24 * time.Hour
	// DefaultLifetime: 397 days, the longest TLS server certificate
	// browsers and Apple platforms still accept.
	DefaultLifetime = 397 * 24 * time.Hour
	// DefaultRenewBefore: certificates closer than this to expiry are
	// issued again by Init.
	DefaultRenewBefore = 30 * 24 * time.Hour

	// CAName is the file stem of the CA: ca.crt and ca.key.
	CAName = "ca"
	// Organization is the subject organization of every certificate.
	Organization = "HelixFlow local development"
)

// clockSkew backdates NotBefore so that a certificate is valid at once on
// machines whose clocks differ slightly.
const clockSkew = 5 * time.Minute

// Spec describes one leaf certificate.
type Spec struct {
	// Name is the file stem: <Name>.crt and <Name>.key in the directory.
	// Lowercase letters, digits and dashes; not "ca".
	Name       string
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	URIs       []*url.URL
	Usage      Usage
}

// Options of Init.
type Options struct {
	// Dir holds the files; it is created (0700) when missing.
	Dir string
	// Force issues a new CA and new certificates even where valid ones exist.
	Force bool
	// CALifetime, Lifetime and RenewBefore default to the Default* values.
	CALifetime  time.Duration
	Lifetime    time.Duration
	RenewBefore time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Action says what Init did with one certificate.
type Action string

// Actions.
const (
	Created Action = "created" // there was none
	Renewed Action = "renewed" // there was one, unusable or forced (Reason says why)
	Kept    Action = "kept"    // valid for its spec
)

// Result is Init's account of one certificate (the CA first).
type Result struct {
	Name     string
	CertFile string
	KeyFile  string
	Action   Action
	// Reason is why an existing certificate was renewed.
	Reason   string
	Usage    Usage
	NotAfter time.Time
}

// Files returns the certificate and key paths of name in dir.
func Files(dir, name string) (certFile, keyFile string) {
	return filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

var nameRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Validate reports the first problem with s, naming the field.
func (s Spec) Validate() error {
	switch {
	case !nameRE.MatchString(s.Name):
		return fmt.Errorf("%w: Name %q: want lowercase letters, digits and dashes", ErrSpec, s.Name)
	case s.Name == CAName:
		return fmt.Errorf("%w: Name %q is the CA's", ErrSpec, s.Name)
	case s.CommonName == "":
		return fmt.Errorf("%w %s: CommonName is empty", ErrSpec, s.Name)
	case s.Usage&^(ServerAuth|ClientAuth) != 0 || s.Usage == 0:
		return fmt.Errorf("%w %s: Usage %d: want ServerAuth, ClientAuth or both", ErrSpec, s.Name, s.Usage)
	case s.Usage&ServerAuth != 0 && len(s.DNSNames)+len(s.IPs) == 0:
		// Clients check names against SANs only, never the common name.
		return fmt.Errorf("%w %s: a server certificate needs DNSNames or IPs", ErrSpec, s.Name)
	}
	for i, d := range s.DNSNames {
		if d == "" {
			return fmt.Errorf("%w %s: DNSNames[%d] is empty", ErrSpec, s.Name, i)
		}
	}
	for i, ip := range s.IPs {
		if ip.To16() == nil {
			return fmt.Errorf("%w %s: IPs[%d] is not an IP address", ErrSpec, s.Name, i)
		}
	}
	for i, u := range s.URIs {
		if u == nil || u.Scheme == "" {
			return fmt.Errorf("%w %s: URIs[%d] needs a scheme", ErrSpec, s.Name, i)
		}
	}
	return nil
}

func (o *Options) defaults() {
	if o.CALifetime <= 0 {
		o.CALifetime = DefaultCALifetime
	}
	if o.Lifetime <= 0 {
		o.Lifetime = DefaultLifetime
	}
	if o.RenewBefore <= 0 {
		o.RenewBefore = DefaultRenewBefore
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Init makes sure Dir holds a valid CA and a valid certificate for each
// spec, issuing what is missing, invalid, about to expire or (with Force)
// everything. Existing key files are tightened to 0600.
func Init(ctx context.Context, opts Options, specs []Spec) ([]Result, error) {
	opts.defaults()
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is empty", ErrSpec)
	}
	if opts.Lifetime > opts.CALifetime {
		return nil, fmt.Errorf("%w: Lifetime %s outlives CALifetime %s", ErrSpec, opts.Lifetime, opts.CALifetime)
	}
	seen := map[string]bool{}
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%w: Name %q appears twice", ErrSpec, s.Name)
		}
		seen[s.Name] = true
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWrite, err)
	}

	ca, res, err := ensureCA(opts)
	if err != nil {
		return nil, err
	}
	results := []Result{res}
	for _, s := range specs {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		r, err := ensureLeaf(opts, ca, s)
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, nil
}

// authority is a loaded or new CA.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func ensureCA(opts Options) (*authority, Result, error) {
	certFile, keyFile := Files(opts.Dir, CAName)
	res := Result{Name: CAName, CertFile: certFile, KeyFile: keyFile}
	reason := "forced"
	if !opts.Force {
		cert, key, err := loadPair(certFile, keyFile)
		if err == nil {
			err = checkCA(cert, opts)
		}
		if err == nil {
			if err := tightenKey(keyFile); err != nil {
				return nil, res, err
			}
			res.Action, res.NotAfter = Kept, cert.NotAfter
			return newAuthority(cert, key), res, nil
		}
		if errors.Is(err, errMissing) {
			reason = ""
		} else {
			reason = err.Error()
		}
	}
	cert, key, err := issueCA(opts)
	if err != nil {
		return nil, res, err
	}
	if err := writePair(certFile, keyFile, cert, key); err != nil {
		return nil, res, err
	}
	res.Action, res.Reason, res.NotAfter = actionFor(reason), reason, cert.NotAfter
	return newAuthority(cert, key), res, nil
}

func newAuthority(cert *x509.Certificate, key *ecdsa.PrivateKey) *authority {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &authority{cert: cert, key: key, pool: pool}
}

func ensureLeaf(opts Options, ca *authority, s Spec) (Result, error) {
	certFile, keyFile := Files(opts.Dir, s.Name)
	res := Result{Name: s.Name, CertFile: certFile, KeyFile: keyFile, Usage: s.Usage}
	reason := "forced"
	if !opts.Force {
		cert, _, err := loadPair(certFile, keyFile)
		if err == nil {
			err = checkLeaf(cert, ca, s, opts)
		}
		if err == nil {
			if err := tightenKey(keyFile); err != nil {
				return res, err
			}
			res.Action, res.NotAfter = Kept, cert.NotAfter
			return res, nil
		}
		if errors.Is(err, errMissing) {
			reason = ""
		} else {
			reason = err.Error()
		}
	}
	cert, key, err := issueLeaf(opts, ca, s)
	if err != nil {
		return res, err
	}
	if err := writePair(certFile, keyFile, cert, key); err != nil {
		return res, err
	}
	res.Action, res.Reason, res.NotAfter = actionFor(reason), reason, cert.NotAfter
	return res, nil
}

func actionFor(reason string) Action {
	if reason == "" {
		return Created
	}
	return Renewed
}

func issueCA(opts Options) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{Organization},
			// The serial keeps CAs of different checkouts apart in trust stores.
			CommonName: "HelixFlow local CA " + serial.Text(16)[:8],
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(opts.CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Signs leaves only, never another CA.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	return sign(tmpl, tmpl, &key.PublicKey, key, key)
}

func issueLeaf(opts Options, ca *authority, s Spec) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key for %s: %w", s.Name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := opts.Now()
	notAfter := now.Add(opts.Lifetime)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{Organization}, CommonName: s.CommonName},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		// ECDSA signs in the handshake; it never enciphers keys.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           extKeyUsages(s.Usage),
		BasicConstraintsValid: true,
		DNSNames:              s.DNSNames,
		IPAddresses:           s.IPs,
		URIs:                  s.URIs,
	}
	return sign(tmpl, ca.cert, &key.PublicKey, ca.key, key)
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer, key *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse new certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return cert, key, nil
}

func extKeyUsages(u Usage) []x509.ExtKeyUsage {
	var out []x509.ExtKeyUsage
	if u&ServerAuth != 0 {
		out = append(out, x509.ExtKeyUsageServerAuth)
	}
	if u&ClientAuth != 0 {
		out = append(out, x509.ExtKeyUsageClientAuth)
	}
	return out
}

// newSerial returns a random positive serial of exactly 127 bits (RFC 5280
// allows 20 octets; randomness keeps reissued certificates distinct).
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.SetBit(n, 126, 1), nil
}
