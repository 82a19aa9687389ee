package accounts

import (
	"context"
	"encoding/json"
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

// What a signed-in person does to their own account.

// account returns the principal's account.
func (s *Service) account(ctx context.Context, p session.Principal) (*User, error) {
	return s.store.byID(ctx, p.UserID)
}

func (s *Service) updateProfile(ctx context.Context, c caller, p session.Principal, in profileRequest) (*User, error) {
	var pr profile
	if in.DisplayName != nil {
		if err := name("display_name", *in.DisplayName); err != nil {
			return nil, err
		}
		pr.DisplayName = in.DisplayName
	}
	if in.Organization != nil {
		if err := name("organization", *in.Organization); err != nil {
			return nil, err
		}
		pr.Organization = in.Organization
	}
	if in.Preferences != nil {
		prefs, err := preferences(in.Preferences)
		if err != nil {
			return nil, err
		}
		pr.Preferences = prefs
	}
	u, err := s.store.updateProfile(ctx, p.UserID, pr)
	if err != nil {
		return nil, err
	}
	s.record(ctx, c, "account.profile_update", userRef(p.UserID), userRef(p.UserID), audit.ResultSuccess, nil)
	return u, nil
}

// reauthenticate checks the principal's password again (throttled as a
// login is) before a sensitive change.
func (s *Service) reauthenticate(ctx context.Context, c caller, p session.Principal, action, pw string) (*User, error) {
	if err := passwordField("password", pw); err != nil {
		return nil, err
	}
	u, err := s.store.byID(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	if err := s.checkPassword(ctx, c, u.Email, u, pw); err != nil {
		var e *apiError
		if errors.As(err, &e) {
			s.record(ctx, c, action, userRef(p.UserID), userRef(p.UserID), audit.ResultFailure, map[string]string{"reason": e.code})
			if e == errCredentials {
				return nil, errWrongPassword
			}
		}
		return nil, err
	}
	return u, nil
}

// changePassword sets a new password and ends every other session.
func (s *Service) changePassword(ctx context.Context, c caller, p session.Principal, in passwordChangeRequest) error {
	if err := passwordField("current_password", in.CurrentPassword); err != nil {
		return err
	}
	u, err := s.reauthenticate(ctx, c, p, "account.password_change", in.CurrentPassword)
	if err != nil {
		return err
	}
	if err := password.Check(in.NewPassword, u.Email); err != nil {
		return invalid("new_password: %s", strings.TrimPrefix(err.Error(), password.ErrRule.Error()+": "))
	}
	hash, err := s.hasher.Hash(ctx, in.NewPassword)
	if err != nil {
		return hashErr(err)
	}
	if err := s.store.setPassword(ctx, u.ID, hash); err != nil {
		return err
	}
	if err := s.sessions.EndAll(ctx, u.ID, p.SessionID); err != nil {
		return err
	}
	s.record(ctx, c, "account.password_change", userRef(u.ID), userRef(u.ID), audit.ResultSuccess, nil)
	s.notifyPasswordChanged(ctx, u.Email)
	return nil
}

// changeEmail mails a link to the new address (the change happens when it
// is followed) and a notice to the old one.
func (s *Service) changeEmail(ctx context.Context, c caller, p session.Principal, in emailChangeRequest) error {
	newEmail, err := normEmail("new_email", in.NewEmail)
	if err != nil {
		return err
	}
	u, err := s.reauthenticate(ctx, c, p, "account.email_change_request", in.Password)
	if err != nil {
		return err
	}
	if newEmail == u.Email {
		return invalid("new_email is the account's address already")
	}
	// Whether the new address has an account is not told here; its owner
	// learns it by mail.
	if _, err := s.store.byEmail(ctx, newEmail); err == nil {
		s.send(ctx, mail.Message{To: newEmail, Subject: "Address change for a HelixFlow account", Text: "Someone tried to move another HelixFlow account to this address, which has an account already. Nothing has changed.\n"})
	} else if errors.Is(err, errNotFound) {
		tok, err := s.store.issueToken(ctx, u.ID, PurposeChange, newEmail, s.cfg.VerifyLinkLifetime)
		if err != nil {
			return err
		}
		s.sendNow(ctx, mail.Message{To: newEmail, Subject: "Confirm your new email address for HelixFlow", Text: fmt.Sprintf(
			"Confirm this address for your HelixFlow account by opening:\n\n%s\n\nThe link works once and expires in %s. "+
				"If you did not ask for it, ignore this mail.\n", s.link("/verify-email", tok), s.cfg.VerifyLinkLifetime)})
	} else {
		return err
	}
	s.sendNow(ctx, mail.Message{To: u.Email, Subject: "Your HelixFlow address is being changed", Text: fmt.Sprintf(
		"Someone signed in to your HelixFlow account asked to move it to another email address; it moves once that address is confirmed.\n\n"+
			"If it was not you, reset your password now: %s/reset-password\n", s.public)})
	s.record(ctx, c, "account.email_change_request", userRef(u.ID), userRef(u.ID), audit.ResultSuccess, nil)
	return nil
}

var errNoGDPR = &apiError{status: http.StatusServiceUnavailable, code: webapi.CodeUnavailable,
	desc: "account export and erasure are not available on this server"}

// deleteAccount erases the account after its password is given again.
func (s *Service) deleteAccount(ctx context.Context, c caller, p session.Principal, in passwordRequest) error {
	if s.cfg.Eraser == nil {
		return errNoGDPR
	}
	if _, err := s.reauthenticate(ctx, c, p, "account.delete", in.Password); err != nil {
		return err
	}
	by := audit.Event{Actor: userRef(p.UserID), Source: c.source, UserAgent: c.userAgent}
	if err := s.cfg.Eraser.Erase(ctx, p.UserID, by); err != nil {
		return fmt.Errorf("accounts: erase: %w", err)
	}
	return nil
}

func (s *Service) export(ctx context.Context, c caller, p session.Principal) ([]byte, error) {
	if s.cfg.Exporter == nil {
		return nil, errNoGDPR
	}
	b, err := s.cfg.Exporter.Export(ctx, p.UserID)
	if err != nil {
		return nil, fmt.Errorf("accounts: export: %w", err)
	}
	if !json.Valid(b) {
		return nil, errors.New("accounts: the export is not JSON")
	}
	s.record(ctx, c, "account.export", userRef(p.UserID), userRef(p.UserID), audit.ResultSuccess, nil)
	return b, nil
}
