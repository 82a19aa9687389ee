// Package mailtest starts a private mailpit (a real SMTP server that keeps
// what it receives readable through an HTTP API) for a test, and reads the
// mails it got: the tests of helix-authz's mails (verification and reset
// links) send them for real and read them back from there.
//
// Without the mailpit binary (make deps builds it) a test is skipped, or
// fails when CI=true.
package mailtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/mailpitbin"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/testdeps"
)

// TLS modes of Options (extauthz/mail's names).
const (
	TLSNone     = ""         // plain SMTP only
	TLSStartTLS = "starttls" // STARTTLS offered and required
	TLSImplicit = "tls"      // TLS from the first byte
)

// Options say how the server is started.
type Options struct {
	// TLS is TLSNone, TLSStartTLS or TLSImplicit. With TLS the server
	// presents a certificate for localhost and 127.0.0.1 signed by a CA
	// made for the test (Server.CAFile), and refuses to take mail without
	// TLS.
	TLS string
	// Username and Password, when set, are the one login the server
	// accepts (with TLS only: mailpit refuses PLAIN in the clear).
	Username, Password string
	// AllowedRecipients, when set, is a regular expression: mail to other
	// recipients is refused for good (550), as a real server refuses an
	// unknown user.
	AllowedRecipients string
}

// Server is one private mailpit.
type Server struct {
	// SMTP is its SMTP address, 127.0.0.1:port.
	SMTP string
	// URL is its web UI and API, http://127.0.0.1:port.
	URL string
	// CAFile signs its certificate (with TLS).
	CAFile string
	// API reads its mails.
	API *Client
}

// Binary returns the mailpit binary, as the launcher finds it
// (internal/mailpitbin), for the repository above the working directory;
// skipped without it, failed with CI=true.
func Binary(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err == nil {
		var p string
		if p, err = mailpitbin.Find(root); err == nil {
			return p
		}
	}
	testdeps.Missing(t, "mailtest: %v", err)
	return ""
}

// Start starts a mailpit for one test on free loopback ports; it is
// stopped when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	args, caFile, err := tlsArgs(dir, opts)
	if err != nil {
		t.Fatalf("mailtest: %v", err)
	}
	if opts.AllowedRecipients != "" {
		args = append(args, "--smtp-allowed-recipients", opts.AllowedRecipients)
	}
	// Another picker may take a port between the pick and mailpit's
	// bind: try again with new ports.
	var last error
	for range 3 {
		s, err := start(t, bin, dir, args)
		if err == nil {
			s.CAFile = caFile
			return s
		}
		last = err
	}
	t.Fatalf("mailtest: %v", last)
	return nil
}

func start(t testing.TB, bin, dir string, extra []string) (*Server, error) {
	smtpPort, err := freeport.Pick()
	if err != nil {
		return nil, err
	}
	httpPort, err := freeport.Pick()
	if err != nil {
		return nil, err
	}
	if smtpPort == httpPort {
		return nil, errors.New("the same port picked twice")
	}
	s := &Server{
		SMTP: fmt.Sprintf("127.0.0.1:%d", smtpPort),
		URL:  fmt.Sprintf("http://127.0.0.1:%d", httpPort),
	}
	s.API = NewClient(s.URL)
	logPath := filepath.Join(dir, "mailpit.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	args := append(mailpitbin.Args(s.SMTP, s.URL[len("http://"):], filepath.Join(dir, "mailpit.db")), extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mailpit: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		if ready(ctx, s) == nil {
			t.Cleanup(stop)
			return s, nil
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("mailpit exited (%v): %s", err, out)
		case <-ctx.Done():
			stop()
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("mailpit on %s and %s did not get ready: %s", s.SMTP, s.URL, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ready: the API answers /readyz and the SMTP port takes connections.
func ready(ctx context.Context, s *Server) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := s.API.HTTP.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s", resp.Status)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.SMTP)
	if err != nil {
		return err
	}
	return c.Close()
}

// tlsArgs makes the certificate and password files opts need and returns
// mailpit's arguments for them.
func tlsArgs(dir string, opts Options) (args []string, caFile string, err error) {
	switch opts.TLS {
	case TLSNone:
		if opts.Username != "" {
			return nil, "", errors.New("a login needs TLS (mailpit refuses PLAIN in the clear)")
		}
		return nil, "", nil
	case TLSStartTLS, TLSImplicit:
	default:
		return nil, "", fmt.Errorf("TLS mode %q is none of %q, %q, %q", opts.TLS, TLSNone, TLSStartTLS, TLSImplicit)
	}
	pkiDir := filepath.Join(dir, "pki")
	res, err := pki.Init(context.Background(), pki.Options{Dir: pkiDir}, []pki.Spec{{
		Name: "mailpit", CommonName: "mailpit", Usage: pki.ServerAuth,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
	}})
	if err != nil {
		return nil, "", err
	}
	cert, key := pki.Files(pkiDir, "mailpit")
	args = []string{"--smtp-tls-cert", cert, "--smtp-tls-key", key}
	if opts.TLS == TLSImplicit {
		args = append(args, "--smtp-require-tls")
	} else {
		args = append(args, "--smtp-require-starttls")
	}
	if opts.Username != "" {
		// An htpasswd line; mailpit splits the file at white space, so
		// the password goes in hashed (bcrypt has none) and the username
		// may not have any.
		if strings.ContainsAny(opts.Username, ": \t\r\n") {
			return nil, "", fmt.Errorf("username %q has a colon or white space", opts.Username)
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
		if err != nil {
			return nil, "", err
		}
		auth := filepath.Join(dir, "smtp-auth")
		if err := os.WriteFile(auth, []byte(opts.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			return nil, "", err
		}
		args = append(args, "--smtp-auth-file", auth)
	}
	return args, res[0].CertFile, nil
}

// repoRoot is the folder of the go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
