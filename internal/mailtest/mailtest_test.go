package mailtest

import (
	"context"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/mail"
)

// A real mail, sent by extauthz/mail's SMTP sender in each TLS mode, is read
// back through the API with its link.
func TestSendAndRead(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		tls  string
	}{
		{"plain to loopback", Options{}, mail.TLSNone},
		{"STARTTLS with a login", Options{TLS: TLSStartTLS, Username: "helix", Password: "s3cret pass"}, mail.TLSStartTLS},
		{"implicit TLS with a login", Options{TLS: TLSImplicit, Username: "helix", Password: "s3cret pass"}, mail.TLSImplicit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, tt.opts)
			sender, err := mail.NewSMTP(mail.SMTPConfig{
				Address: s.SMTP, TLS: tt.tls, CAFile: s.CAFile,
				Username: tt.opts.Username, Password: tt.opts.Password, From: "helixflow@example.com",
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = sender.Send(ctx, mail.Message{
				To: "ada@example.com", Subject: "Verify your address — HelixFlow",
				Text: "Open https://helix.example/verify-email?token=abc_DEF-1 to verify.\nNot you? Ignore this.",
			})
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.API.WaitFor(ctx, "ada@example.com", "Verify your address")
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != "Verify your address — HelixFlow" || len(m.To) != 1 || m.To[0] != "ada@example.com" {
				t.Fatalf("mail %+v", m)
			}
			if got, want := Link(m, "/verify-email"), "https://helix.example/verify-email?token=abc_DEF-1"; got != want {
				t.Fatalf("link %q, want %q (text %q)", got, want, m.Text)
			}
		})
	}
}

// Messages keeps exact recipients only (mailpit's search matches parts of
// addresses), newest first.
func TestMessagesExactRecipient(t *testing.T) {
	s := Start(t, Options{})
	sender, err := mail.NewSMTP(mail.SMTPConfig{Address: s.SMTP, TLS: mail.TLSNone, From: "helixflow@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, m := range []mail.Message{
		{To: "b@example.com", Subject: "first", Text: "1"},
		{To: "bb@example.com", Subject: "other", Text: "2"},
		{To: "b@example.com", Subject: "second", Text: "3"},
	} {
		if err := sender.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.API.WaitFor(ctx, "b@example.com", "second"); err != nil {
		t.Fatal(err)
	}
	got, err := s.API.Messages(ctx, "b@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Subject != "second" || got[1].Subject != "first" {
		t.Fatalf("messages %+v, want second and first", got)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if m, err := s.API.WaitFor(short, "b@example.com", "other"); err == nil {
		t.Fatalf("WaitFor found %+v, sent to another address", m)
	}
}

func TestLink(t *testing.T) {
	tests := []struct {
		name, text, prefix, want string
	}{
		{"first matching", "see https://a.example/x and https://a.example/reset-password?token=1.", "/reset-password",
			"https://a.example/reset-password?token=1."},
		{"in angle brackets", "<https://a.example/verify-email?token=2>", "/verify-email", "https://a.example/verify-email?token=2"},
		{"none", "https://a.example/other", "/verify-email", ""},
		{"no URL", "hello", "/", ""},
		{"http too", "http://127.0.0.1:8090/verify-email?token=3\n", "/verify-email", "http://127.0.0.1:8090/verify-email?token=3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Link(Mail{Text: tt.text}, tt.prefix); got != tt.want {
				t.Fatalf("Link %q, want %q", got, tt.want)
			}
		})
	}
}
