package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/mail"
	"github.com/helixflow/helixflow/extauthz/password"
	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/webapi"
)

// Sign-up, address verification, login and password reset: the flows
// before a session exists.

// SignUp creates an unverified account and mails a verification link; an
// address that has an account gets a notice instead. Both answer the
// same after the same work: the hash is computed either way, and the
// rest runs after the answer.
func (s *Service) signUp(ctx context.Context, c caller, in signupRequest) error {
	if e := s.mailSourceLimited(c); e != nil {
		s.record(ctx, c, "account.signup", "", "", audit.ResultDenied, map[string]string{"reason": "rate_limited"})
		return e
	}
	email, err := normEmail("email", in.Email)
	if err != nil {
		return err
	}
	if err := name("display_name", in.DisplayName); err != nil {
		return err
	}
	if err := name("organization", in.Organization); err != nil {
		return err
	}
	if err := password.Check(in.Password, email); err != nil {
		return invalid("password: %s", strings.TrimPrefix(err.Error(), password.ErrRule.Error()+": "))
	}
	if !s.reserve() {
		return errBusy
	}
	hash, err := s.hasher.Hash(ctx, in.Password)
	if err != nil {
		<-s.bg
		return hashErr(err)
	}
	s.background(ctx, func(ctx context.Context) {
		id, err := s.store.create(ctx, email, hash, in.DisplayName, in.Organization)
		switch {
		case errors.Is(err, errExists):
			s.record(ctx, c, "account.signup", "", "", audit.ResultFailure, map[string]string{"reason": "email_taken"})
			s.send(ctx, mail.Message{To: email, Subject: "Sign-up attempt for your HelixFlow account", Text: fmt.Sprintf(
				"Someone, perhaps you, tried to sign up for HelixFlow with this address, which already has an account.\n\n"+
					"If you forgot your password, reset it here:\n%s/reset-password\n\n"+
					"If it was not you, ignore this mail: nothing has changed.\n", s.public)})
		case err != nil:
			s.log.Error("sign-up failed", "error", err)
		default:
			s.record(ctx, c, "account.signup", userRef(id), userRef(id), audit.ResultSuccess, nil)
			s.mailVerification(ctx, id, email)
		}
	})
	return nil
}

func (s *Service) mailVerification(ctx context.Context, userID, email string) {
	tok, err := s.store.issueToken(ctx, userID, PurposeVerify, "", s.cfg.VerifyLinkLifetime)
	if err != nil {
		s.log.Error("verification link not issued", "error", err)
		return
	}
	s.send(ctx, mail.Message{To: email, Subject: "Confirm your email address for HelixFlow", Text: fmt.Sprintf(
		"Welcome to HelixFlow. Confirm your email address by opening this link:\n\n%s\n\n"+
			"The link works once and expires in %s. If you did not sign up, ignore this mail.\n",
		s.link("/verify-email", tok), s.cfg.VerifyLinkLifetime)})
}

// verifyEmail uses a verification or email-change link.
func (s *Service) verifyEmail(ctx context.Context, c caller, token string) (*User, error) {
	if err := tokenField(token); err != nil {
		s.record(ctx, c, "account.verify_email", "", "", audit.ResultFailure, map[string]string{"reason": "invalid_token"})
		return nil, err
	}
	u, used, err := s.store.verify(ctx, token)
	action := "account.verify_email"
	if used.Purpose == PurposeChange {
		action = "account.email_change"
	}
	switch {
	case errors.Is(err, errBadToken):
		s.record(ctx, c, action, "", "", audit.ResultFailure, map[string]string{"reason": "invalid_token"})
		return nil, errInvalidToken
	case errors.Is(err, errExists):
		s.record(ctx, c, action, userRef(used.UserID), userRef(used.UserID), audit.ResultFailure, map[string]string{"reason": "email_taken"})
		return nil, &apiError{status: http.StatusConflict, code: webapi.CodeConflict, desc: "the new address has an account of its own by now"}
	case err != nil:
		return nil, err
	}
	s.record(ctx, c, action, userRef(u.ID), userRef(u.ID), audit.ResultSuccess, nil)
	return u, nil
}

// login checks the password: the caller then starts a session.
func (s *Service) login(ctx context.Context, c caller, in loginRequest) (*User, error) {
	email, err := normEmail("email", in.Email)
	if err != nil {
		return nil, err
	}
	if err := passwordField("password", in.Password); err != nil {
		return nil, err
	}
	u, err := s.store.byEmail(ctx, email)
	if err != nil && !errors.Is(err, errNotFound) {
		return nil, err
	}
	if err := s.checkPassword(ctx, c, email, u, in.Password); err != nil {
		var e *apiError
		if errors.As(err, &e) && u != nil {
			result := audit.ResultFailure
			if e.status == http.StatusTooManyRequests {
				result = audit.ResultDenied
			}
			s.record(ctx, c, "account.login", "", userRef(u.ID), result, map[string]string{"reason": e.code})
		} else if errors.As(err, &e) {
			s.record(ctx, c, "account.login", "", "", audit.ResultFailure, map[string]string{"reason": e.code})
		}
		return nil, err
	}
	if !u.EmailVerified {
		s.record(ctx, c, "account.login", userRef(u.ID), userRef(u.ID), audit.ResultDenied, map[string]string{"reason": CodeEmailNotVerified})
		return nil, errNotVerified
	}
	return u, nil
}

// startSession ends the session the request presents (never adopted:
// fixation) and starts a new one, with its cookie.
func (s *Service) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, c caller, u *User) (session.Created, error) {
	if err := s.sessions.EndPresented(ctx, r); err != nil {
		return session.Created{}, err
	}
	created, err := s.sessions.CreateBrowserSession(ctx, u.ID, c.source, c.userAgent)
	if err != nil {
		return session.Created{}, err
	}
	s.sessions.SetCookie(w, created)
	s.record(ctx, c, "account.login", userRef(u.ID), "session:"+created.ID, audit.ResultSuccess, nil)
	return created, nil
}

// requestReset mails a reset link if the address has an account; it
// answers the same either way, before looking.
func (s *Service) requestReset(ctx context.Context, c caller, in resetRequest) error {
	if e := s.mailSourceLimited(c); e != nil {
		s.record(ctx, c, "account.password_reset_request", "", "", audit.ResultDenied, map[string]string{"reason": "rate_limited"})
		return e
	}
	email, err := normEmail("email", in.Email)
	if err != nil {
		return err
	}
	if !s.reserve() {
		return errBusy
	}
	s.background(ctx, func(ctx context.Context) {
		u, err := s.store.byEmail(ctx, email)
		if errors.Is(err, errNotFound) {
			s.record(ctx, c, "account.password_reset_request", "", "", audit.ResultFailure, map[string]string{"reason": "no_account"})
			return
		}
		if err != nil {
			s.log.Error("password reset lookup failed", "error", err)
			return
		}
		tok, err := s.store.issueToken(ctx, u.ID, PurposeReset, "", s.cfg.ResetLinkLifetime)
		if err != nil {
			s.log.Error("reset link not issued", "error", err)
			return
		}
		s.record(ctx, c, "account.password_reset_request", "", userRef(u.ID), audit.ResultSuccess, nil)
		s.send(ctx, mail.Message{To: email, Subject: "Reset your HelixFlow password", Text: fmt.Sprintf(
			"Someone, perhaps you, asked to reset the password of your HelixFlow account. To choose a new one, open:\n\n%s\n\n"+
				"The link works once and expires in %s. If it was not you, ignore this mail: your password stays as it is.\n",
			s.link("/reset-password", tok), s.cfg.ResetLinkLifetime)})
	})
	return nil
}

// confirmReset sets a new password through a reset link and ends every
// session of the account.
func (s *Service) confirmReset(ctx context.Context, c caller, in resetConfirmRequest) error {
	if err := tokenField(in.Token); err != nil {
		s.record(ctx, c, "account.password_reset", "", "", audit.ResultFailure, map[string]string{"reason": "invalid_token"})
		return err
	}
	// The account's address is unknown until the token is used; the
	// email rule is checked against it below.
	if err := password.Check(in.NewPassword, ""); err != nil {
		return invalid("new_password: %s", strings.TrimPrefix(err.Error(), password.ErrRule.Error()+": "))
	}
	hash, err := s.hasher.Hash(ctx, in.NewPassword)
	if err != nil {
		return hashErr(err)
	}
	userID, err := s.store.reset(ctx, in.Token, hash)
	if errors.Is(err, errBadToken) {
		s.record(ctx, c, "account.password_reset", "", "", audit.ResultFailure, map[string]string{"reason": "invalid_token"})
		return errInvalidToken
	}
	if err != nil {
		return err
	}
	if err := s.sessions.EndAll(ctx, userID, ""); err != nil {
		return err
	}
	s.record(ctx, c, "account.password_reset", userRef(userID), userRef(userID), audit.ResultSuccess, nil)
	if u, err := s.store.byID(ctx, userID); err == nil {
		s.notifyPasswordChanged(ctx, u.Email)
	}
	return nil
}

func (s *Service) notifyPasswordChanged(ctx context.Context, email string) {
	s.sendNow(ctx, mail.Message{To: email, Subject: "Your HelixFlow password was changed", Text: fmt.Sprintf(
		"The password of your HelixFlow account was just changed, and other sessions signed out.\n\n"+
			"If it was not you, reset it now: %s/reset-password\n", s.public)})
}
