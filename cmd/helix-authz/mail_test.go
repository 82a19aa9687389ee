package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The SMTP flags: mail settings without a server are a mistake; the
// password comes from a file or HELIX_SMTP_PASSWORD, never a flag; plain
// SMTP goes to a loopback server only.
func TestMailFlags(t *testing.T) {
	base := []string{"--database-url=postgres://helix@db/helix", "--issuer=https://auth.example.com",
		"--gateway-config=gateway.yaml", "--plaintext-loopback"}
	pwFile := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		env      string
		parseErr string
		sendErr  string
		off      bool
	}{
		{name: "no mail", off: true},
		{name: "mail settings without a server", args: []string{"--mail-from=helix@example.com"}, parseErr: "--mail-from needs --smtp-address"},
		{name: "password file without a server", args: []string{"--smtp-password-file=" + pwFile}, parseErr: "--smtp-password-file needs --smtp-address"},
		{name: "starttls", args: []string{"--smtp-address=smtp.example.com:587", "--mail-from=helix@example.com"}},
		{name: "no from", args: []string{"--smtp-address=smtp.example.com:587"}, sendErr: "from"},
		{name: "plain SMTP off loopback", args: []string{"--smtp-address=smtp.example.com:25", "--smtp-tls=none", "--mail-from=helix@example.com"},
			sendErr: "loopback"},
		{name: "plain SMTP to loopback", args: []string{"--smtp-address=127.0.0.1:1025", "--smtp-tls=none", "--mail-from=helix@example.com"}},
		{name: "password from a file", args: []string{"--smtp-address=smtp.example.com:587", "--mail-from=helix@example.com",
			"--smtp-username=helix", "--smtp-password-file=" + pwFile}},
		{name: "missing password file", args: []string{"--smtp-address=smtp.example.com:587", "--mail-from=helix@example.com",
			"--smtp-username=helix", "--smtp-password-file=" + pwFile + ".missing"}, sendErr: "--smtp-password-file"},
		{name: "password from the environment", args: []string{"--smtp-address=smtp.example.com:587", "--mail-from=helix@example.com",
			"--smtp-username=helix"}, env: "from-env"},
		{name: "no --smtp-password flag", args: []string{"--smtp-password=x"}, parseErr: "smtp-password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HELIX_SMTP_PASSWORD", tc.env)
			o, err := parseFlags(append(append([]string{}, base...), tc.args...))
			if tc.parseErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.parseErr) {
					t.Fatalf("parseFlags: %v, want an error naming %q", err, tc.parseErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s, err := mailSender(o)
			if tc.sendErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.sendErr) {
					t.Fatalf("mailSender: %v, want an error naming %q", err, tc.sendErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (s == nil) != tc.off {
				t.Fatalf("sender %v, want off: %v", s, tc.off)
			}
		})
	}
}
