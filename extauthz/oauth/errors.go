package oauth

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/ory/fosite"
)

// wwwAuthenticate goes with every 401: clients learn that HTTP Basic is
// the scheme (RFC 6749 5.2, RFC 9110 11.6.1).
const wwwAuthenticate = `Basic realm="helix-authz", charset="UTF-8"`

// Error codes of RFC 6749 5.2 (and 503's temporarily_unavailable).
const (
	codeInvalidRequest       = "invalid_request"
	codeInvalidClient        = "invalid_client"
	codeInvalidGrant         = "invalid_grant"
	codeUnauthorizedClient   = "unauthorized_client"
	codeUnsupportedGrantType = "unsupported_grant_type"
	codeInvalidScope         = "invalid_scope"
	// Authorization endpoint errors (RFC 6749 4.1.2.1), answered to the
	// browser when the redirect URI cannot be trusted.
	codeUnsupportedResponseType = "unsupported_response_type"
	codeAccessDenied            = "access_denied"
	codeUnavailable             = "temporarily_unavailable"
	codeServerError             = "server_error"
)

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// rfcError is base with description as the whole error_description.
func rfcError(base *fosite.RFC6749Error, description string) *fosite.RFC6749Error {
	return base.WithDescription(description).WithHint("")
}

func invalidRequest(description string) error {
	return rfcError(fosite.ErrInvalidRequest, description)
}

// writeError answers err as RFC 6749 5.2 says and returns the error code.
// Descriptions come from fosite's messages (no debug details) or ours;
// failures of our own are logged and answered without details.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) string {
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")

	if isUnavailable(err) || errors.Is(err, fosite.ErrTemporarilyUnavailable) {
		s.log.WarnContext(r.Context(), "oauth: backing service unavailable", "path", r.URL.Path, "err", err)
		h.Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{
			Error:       codeUnavailable,
			Description: "The authorization server is temporarily unable to handle the request. Retry later.",
		})
		return codeUnavailable
	}

	rfc := fosite.ErrorToRFC6749Error(err)
	body := errorBody{Error: rfc.ErrorField, Description: rfc.GetDescription()}
	status := http.StatusBadRequest
	switch rfc.ErrorField {
	case codeInvalidClient:
		status = http.StatusUnauthorized
	case "request_unauthorized":
		// fosite's name for a failed introspection caller authentication.
		status = http.StatusUnauthorized
		body = errorBody{Error: codeInvalidClient, Description: fosite.ErrInvalidClient.DescriptionField}
	case codeInvalidRequest, codeInvalidGrant, codeUnauthorizedClient, codeUnsupportedGrantType, codeInvalidScope,
		codeUnsupportedResponseType, codeAccessDenied:
	default:
		s.log.ErrorContext(r.Context(), "oauth: request failed", "path", r.URL.Path, "err", err, "debug", rfc.Debug())
		writeJSON(w, http.StatusInternalServerError, errorBody{
			Error:       codeServerError,
			Description: "The authorization server encountered an unexpected condition.",
		})
		return codeServerError
	}
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", wwwAuthenticate)
	}
	s.log.DebugContext(r.Context(), "oauth: request refused", "path", r.URL.Path, "error", body.Error, "reason", body.Description, "debug", rfc.Debug())
	writeJSON(w, status, body)
	return body.Error
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own plain structs get here.
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
