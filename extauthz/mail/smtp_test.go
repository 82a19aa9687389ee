package mail_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/extauthz/mail"
	"github.com/helixflow/helixflow/internal/mailtest"
)

var msg = mail.Message{To: "ada@example.com", Subject: "Reset your password", Text: "https://h.example/reset-password?token=x"}

// The sender refuses what it must against a real server (mailpit): no TLS
// where TLS was asked for, a certificate from another CA, a wrong login,
// and it tells a permanent refusal (550) from a temporary one.
func TestSMTPRefusals(t *testing.T) {
	plain := mailtest.Start(t, mailtest.Options{})
	tlsServer := mailtest.Start(t, mailtest.Options{TLS: mailtest.TLSStartTLS, Username: "helix", Password: "right"})
	other := mailtest.Start(t, mailtest.Options{TLS: mailtest.TLSStartTLS})
	picky := mailtest.Start(t, mailtest.Options{AllowedRecipients: "@example\\.org$"})
	tests := []struct {
		name      string
		cfg       mail.SMTPConfig
		permanent bool
	}{
		{"STARTTLS asked, the server has none",
			mail.SMTPConfig{Address: plain.SMTP, TLS: mail.TLSStartTLS}, false},
		{"implicit TLS asked, the server speaks plain SMTP",
			mail.SMTPConfig{Address: plain.SMTP, TLS: mail.TLSImplicit, Timeout: 2 * time.Second}, false},
		{"system CAs do not know the test CA",
			mail.SMTPConfig{Address: tlsServer.SMTP, Username: "helix", Password: "right"}, false},
		{"another CA",
			mail.SMTPConfig{Address: tlsServer.SMTP, CAFile: other.CAFile, Username: "helix", Password: "right"}, false},
		{"wrong password",
			mail.SMTPConfig{Address: tlsServer.SMTP, CAFile: tlsServer.CAFile, Username: "helix", Password: "wrong"}, false},
		{"no login where one is required (530)",
			mail.SMTPConfig{Address: tlsServer.SMTP, CAFile: tlsServer.CAFile}, true},
		{"recipient refused for good",
			mail.SMTPConfig{Address: picky.SMTP, TLS: mail.TLSNone}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.From = "helixflow@example.com"
			s, err := mail.NewSMTP(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = s.Send(ctx, msg)
			if err == nil {
				t.Fatal("sent")
			}
			var perm *mail.PermanentError
			if errors.As(err, &perm) != tt.permanent {
				t.Fatalf("permanent %v, want %v: %v", !tt.permanent, tt.permanent, err)
			}
		})
	}
	for _, s := range []*mailtest.Server{plain, tlsServer, other, picky} {
		if got, err := s.API.Messages(context.Background(), msg.To); err != nil || len(got) != 0 {
			t.Fatalf("%s received %d mails (%v)", s.SMTP, len(got), err)
		}
	}
}

// The queue delivers through SMTP; its logs never carry the password or
// the recipient's address.
func TestQueueOverSMTP(t *testing.T) {
	const password = "correct horse battery staple"
	s := mailtest.Start(t, mailtest.Options{TLS: mailtest.TLSStartTLS, Username: "helix", Password: password})
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	run := func(pw string, m mail.Message) {
		sender, err := mail.NewSMTP(mail.SMTPConfig{
			Address: s.SMTP, CAFile: s.CAFile, Username: "helix", Password: pw, From: "helixflow@example.com",
		})
		if err != nil {
			t.Fatal(err)
		}
		q, err := mail.NewQueue(mail.QueueConfig{
			Sender: sender, MaxElapsed: 300 * time.Millisecond, Logger: log, Registerer: prometheus.NewRegistry(),
			BackOff: func() backoff.BackOff { return backoff.NewConstantBackOff(50 * time.Millisecond) },
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { q.Run(ctx); close(done) }()
		if err := q.Enqueue(m); err != nil {
			t.Fatal(err)
		}
		wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		if pw == password {
			if _, err := s.API.WaitFor(wait, m.To, m.Subject); err != nil {
				t.Fatal(err)
			}
		} else {
			time.Sleep(time.Second) // retried, then given up
		}
		cancel()
		<-done
	}
	run(password, msg)
	bad := mail.Message{To: "grace@example.com", Subject: "Verify", Text: "x"}
	run(password+"x", bad)
	out := logs.String()
	if !strings.Contains(out, "mail not delivered") {
		t.Fatalf("no failure logged:\n%s", out)
	}
	for _, secret := range []string{password, "grace@example.com", "ada@example.com"} {
		if strings.Contains(out, secret) {
			t.Fatalf("the log carries %q:\n%s", secret, out)
		}
	}
}
