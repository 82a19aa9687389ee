// Package accounts is people's accounts in helix-authz: sign-up with a
// verified email address, login and logout with a browser session,
// password reset and change, email change (verified again), profile,
// sessions, and account deletion and export (GDPR, through the Eraser and
// Exporter it is given). It serves the JSON API under /api/v1 and the few
// HTML pages a person needs to follow a mailed link or sign in for an
// OAuth2 app (/login, /verify-email, /reset-password).
//
// Abuse: failed password checks are throttled per source address, per
// account and source, and per account alone (a short cap, so attackers
// cannot lock a victim out for long), before any hash is computed.
// Sign-up and reset answer the same whether the address has an account,
// after the same work: the part that differs runs after the answer, and
// mails leave through a queue. Every action is recorded in the audit
// trail with references only (user:<id>, session:<id>).
//
// The throttles are per replica: N replicas give an attacker N times the
// attempts.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/mail"
	"github.com/helixflow/helixflow/extauthz/password"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/throttle"
	"github.com/helixflow/helixflow/extauthz/webapi"
	"github.com/helixflow/helixflow/internal/pgtext"
	"github.com/helixflow/helixflow/internal/sourcelimit"
)

// Defaults of Config's zero fields.
const (
	DefaultVerifyLinkLifetime = 24 * time.Hour
	DefaultResetLinkLifetime  = time.Hour
	// Sign-up and reset requests per source: a burst, then one per 10 s.
	DefaultMailSourceRate  = 0.1
	DefaultMailSourceBurst = 10
	// backgroundJobs bounds the sign-up and reset work running after
	// their answers.
	backgroundJobs = 64
	// mailInterval: at most one mail per address per interval.
	mailInterval = time.Minute
)

// Eraser erases a person (GDPR art. 17): the gdpr package implements it.
// by names who asked (Actor, Source, UserAgent) for the audit trail.
type Eraser interface {
	Erase(ctx context.Context, userID string, by audit.Event) error
}

// Exporter exports everything held about a person (GDPR art. 15/20) as one
// JSON document: the gdpr package implements it.
type Exporter interface {
	Export(ctx context.Context, userID string) ([]byte, error)
}

// Config configures a Service.
type Config struct {
	DB        *pgxpool.Pool
	Sessions  *session.Manager
	Passwords *password.Hasher
	// Mail sends the links and notices; in the server a mail.Queue, whose
	// Send only queues (SMTP latency must not show in an answer).
	Mail  mail.Sender
	Audit audit.Recorder
	// Eraser and Exporter serve DELETE /api/v1/account and
	// GET /api/v1/account/export; nil answers 503.
	Eraser   Eraser
	Exporter Exporter
	// Sources tells a request's source address (trusted proxies).
	Sources sourcelimit.Sources
	// PublicURL is where mailed links point (scheme://host[/prefix]).
	PublicURL string
	// VerifyLinkLifetime bounds verification and email-change links
	// (--email-verify-lifetime, 24 h); ResetLinkLifetime reset links
	// (--password-reset-lifetime, 1 h).
	VerifyLinkLifetime, ResetLinkLifetime time.Duration
	// MailSourceRate and MailSourceBurst limit sign-up and reset requests
	// per source address.
	MailSourceRate  float64
	MailSourceBurst int
	// Now is the throttles' clock (time.Now when nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// Service is the accounts' logic; Mount serves it.
type Service struct {
	cfg      Config
	store    store
	sessions *session.Manager
	hasher   *password.Hasher
	log      *slog.Logger
	public   string

	// Failed password checks (login, and the password asked again for a
	// change): per source (1 s doubling to 15 min), per account+source
	// (same), per account alone (1 s doubling to 1 min).
	bySource, byAccountSource, byAccount *throttle.Throttle
	// mailTo allows one mail per address per minute; mailSource limits
	// sign-up and reset requests per source.
	mailTo     *throttle.Throttle
	mailSource *sourcelimit.Limiter

	// bg runs the work that follows a sign-up or reset answer.
	bg chan struct{}
	wg sync.WaitGroup
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.DB == nil:
		return nil, errors.New("accounts: no database")
	case cfg.Sessions == nil:
		return nil, errors.New("accounts: no session manager")
	case cfg.Passwords == nil:
		return nil, errors.New("accounts: no password hasher")
	case cfg.Mail == nil:
		return nil, errors.New("accounts: no mail sender (sign-up cannot work without mail)")
	case cfg.Audit == nil:
		return nil, errors.New("accounts: no audit recorder")
	}
	if _, err := session.Origin(cfg.PublicURL); err != nil {
		return nil, fmt.Errorf("accounts: public URL: %w", err)
	}
	if cfg.VerifyLinkLifetime == 0 {
		cfg.VerifyLinkLifetime = DefaultVerifyLinkLifetime
	}
	if cfg.ResetLinkLifetime == 0 {
		cfg.ResetLinkLifetime = DefaultResetLinkLifetime
	}
	if cfg.VerifyLinkLifetime < 0 || cfg.ResetLinkLifetime < 0 {
		return nil, errors.New("accounts: link lifetimes must be positive")
	}
	if cfg.MailSourceRate == 0 {
		cfg.MailSourceRate = DefaultMailSourceRate
	}
	if cfg.MailSourceBurst == 0 {
		cfg.MailSourceBurst = DefaultMailSourceBurst
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{
		cfg: cfg, store: store{cfg.DB}, sessions: cfg.Sessions, hasher: cfg.Passwords, log: cfg.Logger,
		public: strings.TrimRight(cfg.PublicURL, "/"), bg: make(chan struct{}, backgroundJobs),
	}
	var err error
	mk := func(base, maxWait time.Duration) *throttle.Throttle {
		if err != nil {
			return nil
		}
		var t *throttle.Throttle
		t, err = throttle.New(throttle.Config{Base: base, Max: maxWait, Now: cfg.Now})
		return t
	}
	s.bySource = mk(time.Second, 15*time.Minute)
	s.byAccountSource = mk(time.Second, 15*time.Minute)
	s.byAccount = mk(time.Second, time.Minute)
	s.mailTo = mk(mailInterval, mailInterval)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	s.mailSource, err = sourcelimit.New(sourcelimit.Config{Rate: cfg.MailSourceRate, Burst: cfg.MailSourceBurst, Now: cfg.Now})
	if err != nil {
		return nil, fmt.Errorf("accounts: sign-up and reset limit: %w", err)
	}
	return s, nil
}

// Wait waits for the work still running after sign-up and reset answers.
func (s *Service) Wait() { s.wg.Wait() }

// caller is who sent a request, for throttles and the audit trail.
type caller struct {
	addr      netip.Addr
	source    string // addr as text; "" when unknown
	userAgent string
}

func (s *Service) caller(r *http.Request) caller {
	c := caller{userAgent: pgtext.Clip(r.UserAgent(), 512)}
	if a, ok := s.cfg.Sources.Source(r); ok {
		c.addr, c.source = a, a.String()
	}
	return c
}

// anonymous is the actor of an action nobody signed in took (a failed
// login, a sign-up): its source and user agent still say who called.
const anonymous = "anonymous"

// record appends an event; a failure is logged, never the user's problem.
func (s *Service) record(ctx context.Context, c caller, action, actor, target, result string, detail map[string]string) {
	if actor == "" {
		actor = anonymous
	}
	err := s.cfg.Audit.Record(context.WithoutCancel(ctx), audit.Event{
		Actor: actor, Action: action, Target: target, Result: result,
		Source: c.source, UserAgent: c.userAgent, Detail: detail,
	})
	if err != nil {
		s.log.Error("audit event not recorded", "action", action, "result", result, "error", err)
	}
}

func userRef(id string) string {
	if id == "" {
		return ""
	}
	return "user:" + id
}

// Throttle keys. The account part is the lower-cased address as typed,
// so unknown addresses are throttled exactly like known ones.
func (s *Service) keys(c caller, email string) (src, acctSrc, acct string) {
	k := sourcelimit.Key(c.addr).String()
	return "s|" + k, "as|" + email + "|" + k, "a|" + email
}

// throttled answers 429 when any key must still wait.
func (s *Service) throttled(c caller, email string) *apiError {
	src, as, a := s.keys(c, email)
	wait := max(s.bySource.Wait(src), s.byAccountSource.Wait(as), s.byAccount.Wait(a))
	if wait <= 0 {
		return nil
	}
	secs := int(math.Ceil(wait.Seconds()))
	return &apiError{status: http.StatusTooManyRequests, code: webapi.CodeTooManyRequests, retryAfter: secs,
		desc: fmt.Sprintf("too many failed attempts; try again in %d s", secs)}
}

func (s *Service) failed(c caller, email string) {
	src, as, a := s.keys(c, email)
	s.bySource.Failure(src)
	s.byAccountSource.Failure(as)
	s.byAccount.Failure(a)
}

func (s *Service) succeeded(c caller, email string) {
	_, as, _ := s.keys(c, email)
	s.byAccountSource.Success(as)
}

// hashErr maps a hashing error: busy is 503, the rest internal.
func hashErr(err error) error {
	if errors.Is(err, password.ErrBusy) {
		return errBusy
	}
	return err
}

// checkPassword verifies pw for u (nil: no such account, dummy work of the
// same cost), throttled and counted under email, and rehashes when the
// parameters were raised.
func (s *Service) checkPassword(ctx context.Context, c caller, email string, u *User, pw string) error {
	if e := s.throttled(c, email); e != nil {
		return e
	}
	if u == nil || u.passwordHash == "" {
		if err := s.hasher.DummyWork(ctx, pw); err != nil {
			return hashErr(err)
		}
		s.failed(c, email)
		return errCredentials
	}
	ok, rehash, err := s.hasher.Verify(ctx, u.passwordHash, pw)
	if err != nil {
		return hashErr(err)
	}
	if !ok {
		s.failed(c, email)
		return errCredentials
	}
	s.succeeded(c, email)
	if rehash {
		if h, err := s.hasher.Hash(ctx, pw); err == nil {
			if err := s.store.rehash(ctx, u.ID, u.passwordHash, h); err != nil {
				s.log.Warn("rehashing a password failed", "error", err)
			}
		}
	}
	return nil
}

// background runs fn after the answer, bounded; false when full (the
// caller answers 503 before doing anything that depends on the account).
func (s *Service) reserve() bool {
	select {
	case s.bg <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Service) background(ctx context.Context, fn func(ctx context.Context)) {
	s.wg.Go(func() {
		defer func() { <-s.bg }()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		fn(ctx)
	})
}

// mailSourceLimited answers 429 when the source sent too many sign-up or
// reset requests.
func (s *Service) mailSourceLimited(c caller) *apiError {
	ok, retry := s.mailSource.Allow(c.addr)
	if ok {
		return nil
	}
	secs := max(int(math.Ceil(retry.Seconds())), 1)
	return &apiError{status: http.StatusTooManyRequests, code: webapi.CodeTooManyRequests, retryAfter: secs,
		desc: fmt.Sprintf("too many sign-up or reset requests from this address; try again in %d s", secs)}
}

// sendNow queues m: a notice about a signed-in person's own change.
func (s *Service) sendNow(ctx context.Context, m mail.Message) {
	if err := s.cfg.Mail.Send(ctx, m); err != nil {
		s.log.Error("mail not queued", "subject", m.Subject, "error", err)
	}
}

// send queues m unless its address got one within the last minute: the
// mails anyone can trigger (sign-up, reset) cannot flood a mailbox.
func (s *Service) send(ctx context.Context, m mail.Message) {
	key := "m|" + strings.ToLower(m.To)
	if s.mailTo.Wait(key) > 0 {
		s.log.Info("mail not sent: one went to this address within the minute", "subject", m.Subject)
		return
	}
	s.mailTo.Failure(key)
	if err := s.cfg.Mail.Send(ctx, m); err != nil {
		s.log.Error("mail not queued", "subject", m.Subject, "error", err)
	}
}

func (s *Service) link(path, token string) string {
	return s.public + path + "?token=" + token
}
