package tlsfiles

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/pki"
)

func TestServerConfig(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Init(t.Context(), pki.Options{Dir: dir}, pki.LocalSpecs()); err != nil {
		t.Fatal(err)
	}
	cert, key := pki.Files(dir, "xds-server")
	ca, _ := pki.Files(dir, "ca")

	conf, err := ServerConfig(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if conf.ClientAuth != tls.NoClientCert || conf.MinVersion != tls.VersionTLS12 {
		t.Fatalf("without a client CA: %+v", conf)
	}
	if c, err := conf.GetCertificate(nil); err != nil || c == nil {
		t.Fatalf("GetCertificate: %v", err)
	}

	conf, err = ServerConfig(cert, key, ca)
	if err != nil {
		t.Fatal(err)
	}
	if conf.ClientAuth != tls.RequireAndVerifyClientCert || conf.ClientCAs == nil {
		t.Fatalf("with a client CA: %+v", conf)
	}

	bogus := filepath.Join(dir, "bogus.pem")
	if err := os.WriteFile(bogus, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ServerConfig(cert, key, bogus); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("bad client CA: %v", err)
	}
	if _, err := ServerConfig(filepath.Join(dir, "missing.pem"), key, ""); err == nil {
		t.Fatal("missing certificate accepted")
	}
}
