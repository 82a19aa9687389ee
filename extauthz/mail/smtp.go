package mail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// TLS modes of an SMTP connection.
const (
	// TLSStartTLS upgrades a plain connection with STARTTLS and refuses a
	// server that cannot (the default; submission port 587).
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte (port 465).
	TLSImplicit = "tls"
	// TLSNone sends in the clear: allowed only to a loopback server (a
	// local mailpit or a relay on the same host).
	TLSNone = "none"
)

// DefaultSMTPTimeout bounds one delivery when SMTPConfig.Timeout is 0.
const DefaultSMTPTimeout = 30 * time.Second

// SMTPConfig configures an SMTP sender.
type SMTPConfig struct {
	// Address is the server, host:port (required).
	Address string
	// TLS is TLSStartTLS (when ""), TLSImplicit or TLSNone.
	TLS string
	// CAFile is a PEM file of the CAs that sign the server's certificate;
	// the system's when "". Read at every delivery, so a rotated file
	// takes effect without a restart.
	CAFile string
	// Username and Password authenticate (the strongest mechanism the
	// server offers); no authentication when Username is "".
	Username, Password string
	// From is the sender's address (required).
	From string
	// Timeout bounds one delivery (DefaultSMTPTimeout when 0).
	Timeout time.Duration
}

// SMTP delivers messages to an SMTP server, one connection per message
// (helix-authz sends few mails; a pooled connection would have to survive
// server-side idle timeouts for nothing). It is safe for concurrent use.
type SMTP struct {
	cfg  SMTPConfig
	host string
	port int
}

// Validate says what is wrong with cfg, or nil.
func (cfg SMTPConfig) Validate() error {
	host, _, err := splitAddress(cfg.Address)
	if err != nil {
		return err
	}
	switch cfg.TLS {
	case "", TLSStartTLS, TLSImplicit:
	case TLSNone:
		if !loopback(host) {
			return fmt.Errorf("mail: TLS %q is allowed only to a loopback server, not %q", TLSNone, host)
		}
	default:
		return fmt.Errorf("mail: TLS mode %q is none of %s, %s, %s", cfg.TLS, TLSStartTLS, TLSImplicit, TLSNone)
	}
	if err := checkAddress(cfg.From); err != nil {
		return fmt.Errorf("mail: from: %w", err)
	}
	if cfg.Username == "" && cfg.Password != "" {
		return errors.New("mail: a password is given without a username")
	}
	if cfg.Timeout < 0 {
		return fmt.Errorf("mail: timeout %v is negative", cfg.Timeout)
	}
	if cfg.CAFile != "" {
		if _, err := readCAs(cfg.CAFile); err != nil {
			return err
		}
	}
	return nil
}

// NewSMTP checks cfg and returns an SMTP sender. It does not connect.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSStartTLS
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultSMTPTimeout
	}
	host, port, _ := splitAddress(cfg.Address)
	return &SMTP{cfg: cfg, host: host, port: port}, nil
}

// Send delivers m. A refusal the server calls permanent (5xx) is wrapped
// in a PermanentError: retrying it cannot help.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	if err := m.Validate(); err != nil {
		return &PermanentError{Err: err}
	}
	msg := gomail.NewMsg()
	if err := msg.From(s.cfg.From); err != nil {
		return &PermanentError{Err: fmt.Errorf("mail: from: %w", err)}
	}
	if err := msg.To(m.To); err != nil {
		return &PermanentError{Err: fmt.Errorf("%w: recipient: %w", ErrInvalidMessage, err)}
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	client, err := s.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		var se *gomail.SendError
		if errors.As(err, &se) && !se.IsTemp() && se.ErrorCode() >= 500 {
			return &PermanentError{Err: fmt.Errorf("mail: send to a recipient at %s: %w", domain(m.To), err)}
		}
		return fmt.Errorf("mail: send to a recipient at %s: %w", domain(m.To), err)
	}
	return nil
}

// client is a go-mail client for one delivery.
func (s *SMTP) client() (*gomail.Client, error) {
	tlsConf := &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12}
	if s.cfg.CAFile != "" {
		pool, err := readCAs(s.cfg.CAFile)
		if err != nil {
			return nil, err
		}
		tlsConf.RootCAs = pool
	}
	opts := []gomail.Option{
		gomail.WithPort(s.port),
		gomail.WithTimeout(s.cfg.Timeout),
		gomail.WithTLSConfig(tlsConf),
	}
	switch s.cfg.TLS {
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.cfg.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(s.cfg.Username), gomail.WithPassword(s.cfg.Password))
	}
	c, err := gomail.NewClient(s.host, opts...)
	if err != nil {
		return nil, fmt.Errorf("mail: smtp client: %w", err)
	}
	return c, nil
}

// PermanentError is a delivery that retrying cannot fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

func splitAddress(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("mail: SMTP address %q is not host:port: %w", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || h == "" {
		return "", 0, fmt.Errorf("mail: SMTP address %q is not host:port", addr)
	}
	return h, n, nil
}

// loopback is true for a loopback address or "localhost" (which resolves
// to one by RFC 6761); other names could resolve anywhere.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

func readCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mail: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("mail: CA file %s has no PEM certificate", path)
	}
	return pool, nil
}
