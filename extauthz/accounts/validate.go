package accounts

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	netmail "net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/helixflow/helixflow/extauthz/webapi"
)

// Limits of the request fields (the users columns' CHECKs and a little
// below the body limit).
const (
	maxEmailBytes    = 254 // RFC 5321's path limit, users.email's CHECK
	maxNameRunes     = 200 // users.display_name / organization
	maxPasswordBytes = 1024
	maxPrefsBytes    = 16 << 10
)

// CodeInvalidToken: a link token that is unknown, used or expired (one
// answer for all); CodeInvalidCredentials: a wrong email or password;
// CodeEmailNotVerified: the right password of an unverified account.
const (
	CodeInvalidToken       = "invalid_token"
	CodeInvalidCredentials = "invalid_credentials"
	CodeEmailNotVerified   = "email_not_verified"
)

// apiError is an answer to the caller: status, code and a sentence that
// names what was wrong.
type apiError struct {
	status     int
	code, desc string
	retryAfter int // seconds, for 429
}

func (e *apiError) Error() string { return e.code + ": " + e.desc }

func invalid(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: webapi.CodeInvalidRequest, desc: fmt.Sprintf(format, args...)}
}

var (
	errInvalidToken = &apiError{status: http.StatusBadRequest, code: CodeInvalidToken,
		desc: "the link is unknown, already used or expired; ask for a new one"}
	errCredentials = &apiError{status: http.StatusUnauthorized, code: CodeInvalidCredentials,
		desc: "the email address or the password is wrong"}
	errWrongPassword = &apiError{status: http.StatusUnauthorized, code: CodeInvalidCredentials,
		desc: "the password is wrong"}
	errNotVerified = &apiError{status: http.StatusForbidden, code: CodeEmailNotVerified,
		desc: "verify the email address first: follow the link in the mail sent at sign-up, or reset the password"}
	errBusy = &apiError{status: http.StatusServiceUnavailable, code: webapi.CodeUnavailable,
		desc: "too many sign-ins are being checked right now; try again in a few seconds"}
)

// Requests of the JSON API (and of the pages' forms, which fill the same
// structs).
type (
	signupRequest struct {
		Email        string `json:"email"`
		Password     string `json:"password"`
		DisplayName  string `json:"display_name"`
		Organization string `json:"organization"`
	}
	tokenRequest struct {
		Token string `json:"token"`
	}
	loginRequest struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	resetRequest struct {
		Email string `json:"email"`
	}
	resetConfirmRequest struct {
		Token       string `json:"token"`
		NewPassword string `json:"new_password"`
	}
	profileRequest struct {
		DisplayName  *string         `json:"display_name"`
		Organization *string         `json:"organization"`
		Preferences  json.RawMessage `json:"preferences"`
	}
	passwordChangeRequest struct {
		CurrentPassword string `json:"current_password"`
		NewPassword     string `json:"new_password"`
	}
	emailChangeRequest struct {
		NewEmail string `json:"new_email"`
		Password string `json:"password"`
	}
	passwordRequest struct {
		Password string `json:"password"`
	}
)

// normEmail checks an email address field and returns it lower-cased:
// one account per address whatever its case (the local part is
// case-sensitive in theory, never in practice).
func normEmail(field, s string) (string, error) {
	if s == "" {
		return "", invalid("%s is required", field)
	}
	if len(s) > maxEmailBytes {
		return "", invalid("%s is longer than %d bytes", field, maxEmailBytes)
	}
	if err := plainText(field, s); err != nil {
		return "", err
	}
	a, err := netmail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || strings.ContainsAny(s, " \"") {
		return "", invalid("%s is not an email address (user@example.com, no name or brackets)", field)
	}
	local, domain, _ := strings.Cut(s, "@")
	if local == "" || !strings.Contains(domain, ".") || strings.HasPrefix(domain, "[") {
		return "", invalid("%s must be an address at a domain name (user@example.com)", field)
	}
	return strings.ToLower(s), nil
}

// plainText refuses what a one-line text field must not hold: invalid
// UTF-8, NUL (Postgres text cannot hold it) and other control characters.
func plainText(field, s string) error {
	if !utf8.ValidString(s) {
		return invalid("%s is not valid UTF-8", field)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return invalid("%s contains a control character", field)
	}
	return nil
}

// name checks display_name and organization.
func name(field, s string) error {
	if err := plainText(field, s); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(s); n > maxNameRunes {
		return invalid("%s has %d characters; at most %d are allowed", field, n, maxNameRunes)
	}
	return nil
}

// passwordField checks a password presented for verification (not a new
// one: password.Check judges those).
func passwordField(field, s string) error {
	switch {
	case s == "":
		return invalid("%s is required", field)
	case len(s) > maxPasswordBytes:
		return invalid("%s is longer than %d bytes", field, maxPasswordBytes)
	case !utf8.ValidString(s):
		return invalid("%s is not valid UTF-8", field)
	}
	return nil
}

// tokenField checks the shape of a link token; a token of another shape is
// as invalid as an unknown one.
func tokenField(s string) error {
	if len(s) != 43 {
		return errInvalidToken
	}
	if _, err := base64.RawURLEncoding.DecodeString(s); err != nil {
		return errInvalidToken
	}
	return nil
}

// preferences checks a preferences object and returns it re-encoded: a
// JSON object, at most 16 KiB, with no NUL in any string (jsonb refuses
// \u0000).
func preferences(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) > maxPrefsBytes {
		return nil, invalid("preferences is over %d bytes", maxPrefsBytes)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return nil, invalid("preferences must be a JSON object")
	}
	if hasNUL(v) {
		return nil, invalid("preferences contains a NUL character")
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, invalid("preferences cannot be stored: %v", err)
	}
	return out, nil
}

func hasNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.IndexByte(v, 0) >= 0
	case map[string]any:
		for k, e := range v {
			if strings.IndexByte(k, 0) >= 0 || hasNUL(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if hasNUL(e) {
				return true
			}
		}
	}
	return false
}
