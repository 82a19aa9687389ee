// Package mail sends helix-authz's mails (address verification, password
// reset, notices) over SMTP, off the request path.
//
// Callers hand a Message to a Sender. In the server that Sender is a Queue:
// Send only puts the message in a bounded queue and returns, so the time
// SMTP takes never shows in an answer (which would tell an attacker whether
// a mail was sent, and so whether an account exists); background workers
// deliver it through an SMTP Sender, retrying temporary failures with
// exponential backoff (cenkalti/backoff/v5). The SMTP Sender uses
// github.com/wneessen/go-mail (STARTTLS by default, implicit TLS, or no
// TLS to a loopback server only).
//
// Recipients are personal data: logs name only the recipient's domain,
// and never the SMTP password.
package mail

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
)

// Message is one mail to one recipient.
type Message struct {
	// To is the recipient's address (a bare address, "user@example.com").
	To string
	// Subject is one line.
	Subject string
	// Text is the body, text/plain in UTF-8.
	Text string
	// HTML is an optional text/html alternative of Text.
	HTML string
}

// Sender sends a Message. A Queue's Send returns once the message is
// queued; an SMTP's once the server has accepted it.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// ErrInvalidMessage is wrapped by the error of a message that cannot be
// sent as it is (no recipient, a broken address, a two-line subject).
var ErrInvalidMessage = errors.New("mail: invalid message")

// Validate says what is wrong with m, or nil.
func (m Message) Validate() error {
	if err := checkAddress(m.To); err != nil {
		return fmt.Errorf("%w: recipient: %w", ErrInvalidMessage, err)
	}
	switch {
	case strings.TrimSpace(m.Subject) == "":
		return fmt.Errorf("%w: the subject is empty", ErrInvalidMessage)
	case strings.ContainsAny(m.Subject, "\r\n"):
		// go-mail encodes headers, but a line break in a subject is
		// always a mistake (or an injection attempt) upstream.
		return fmt.Errorf("%w: the subject has a line break", ErrInvalidMessage)
	case m.Text == "":
		return fmt.Errorf("%w: the text is empty", ErrInvalidMessage)
	}
	return nil
}

// checkAddress accepts a bare address (no display name, no list).
func checkAddress(s string) error {
	if s == "" {
		return errors.New("no address")
	}
	a, err := netmail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("%q is not an address: %w", s, err)
	}
	if a.Name != "" || a.Address != s {
		return fmt.Errorf("%q is not a bare address", s)
	}
	return nil
}

// domain is the part of an address logs may name.
func domain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}
