package mail

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMessageValidate(t *testing.T) {
	ok := Message{To: "ada@example.com", Subject: "Verify", Text: "link"}
	tests := []struct {
		name string
		edit func(*Message)
		want string // "" valid, else a part of the error
	}{
		{"valid", func(*Message) {}, ""},
		{"valid with HTML", func(m *Message) { m.HTML = "<p>link</p>" }, ""},
		{"unicode subject", func(m *Message) { m.Subject = "Bestätigen — ✓" }, ""},
		{"no recipient", func(m *Message) { m.To = "" }, "no address"},
		{"not an address", func(m *Message) { m.To = "ada" }, "not an address"},
		{"display name", func(m *Message) { m.To = "Ada <ada@example.com>" }, "not a bare address"},
		{"two recipients", func(m *Message) { m.To = "ada@example.com, bob@example.com" }, "not an address"},
		{"header injection in the recipient", func(m *Message) { m.To = "ada@example.com\r\nBcc: x@example.com" }, "recipient"},
		{"empty subject", func(m *Message) { m.Subject = " " }, "subject is empty"},
		{"header injection in the subject", func(m *Message) { m.Subject = "hi\r\nBcc: x@example.com" }, "line break"},
		{"empty text", func(m *Message) { m.Text = "" }, "text is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ok
			tt.edit(&m)
			err := m.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want ErrInvalidMessage naming %q", err, tt.want)
			}
		})
	}
}

func TestSMTPConfigValidate(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := SMTPConfig{Address: "smtp.example.com:587", From: "helixflow@example.com"}
	tests := []struct {
		name string
		edit func(*SMTPConfig)
		want string
	}{
		{"starttls by default", func(*SMTPConfig) {}, ""},
		{"implicit TLS", func(c *SMTPConfig) { c.TLS = TLSImplicit; c.Address = "smtp.example.com:465" }, ""},
		{"login", func(c *SMTPConfig) { c.Username, c.Password = "helix", "pw" }, ""},
		{"none to 127.0.0.1", func(c *SMTPConfig) { c.TLS, c.Address = TLSNone, "127.0.0.1:1025" }, ""},
		{"none to ::1", func(c *SMTPConfig) { c.TLS, c.Address = TLSNone, "[::1]:1025" }, ""},
		{"none to localhost", func(c *SMTPConfig) { c.TLS, c.Address = TLSNone, "localhost:1025" }, ""},
		{"none to a remote server", func(c *SMTPConfig) { c.TLS = TLSNone }, "only to a loopback server"},
		{"none to a name that may resolve anywhere", func(c *SMTPConfig) { c.TLS, c.Address = TLSNone, "mailpit:1025" }, "only to a loopback server"},
		{"unknown mode", func(c *SMTPConfig) { c.TLS = "ssl" }, `"ssl" is none of`},
		{"no address", func(c *SMTPConfig) { c.Address = "" }, "not host:port"},
		{"no port", func(c *SMTPConfig) { c.Address = "smtp.example.com" }, "not host:port"},
		{"bad port", func(c *SMTPConfig) { c.Address = "smtp.example.com:0" }, "not host:port"},
		{"no host", func(c *SMTPConfig) { c.Address = ":25" }, "not host:port"},
		{"no from", func(c *SMTPConfig) { c.From = "" }, "from"},
		{"bad from", func(c *SMTPConfig) { c.From = "helixflow" }, "from"},
		{"password without username", func(c *SMTPConfig) { c.Password = "pw" }, "without a username"},
		{"negative timeout", func(c *SMTPConfig) { c.Timeout = -1 }, "negative"},
		{"missing CA file", func(c *SMTPConfig) { c.CAFile = filepath.Join(dir, "none.pem") }, "CA file"},
		{"CA file without a certificate", func(c *SMTPConfig) { c.CAFile = garbage }, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			_, err := NewSMTP(c)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewSMTP: %v, want an error naming %q", err, tt.want)
			}
		})
	}
}
