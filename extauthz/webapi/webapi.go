// Package webapi is the one shape of helix-authz's public JSON API
// (/api/v1): strict request decoding and the error body every endpoint
// answers with, the same {"error", "error_description"} pair OAuth2 uses
// (RFC 6749 5.2), so a client reads one error shape from every endpoint.
package webapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// MaxBodyBytes bounds request bodies of the JSON API.
const MaxBodyBytes = 64 << 10

// Error codes, the "error" member of an error body.
const (
	CodeInvalidRequest   = "invalid_request"    // 400: malformed or invalid input; the description names the field
	CodeUnauthorized     = "unauthorized"       // 401: no or bad session or token
	CodeForbidden        = "forbidden"          // 403: authenticated, not allowed
	CodeCSRF             = "csrf_failed"        // 403: cookie-authenticated change without a matching CSRF token
	CodeNotFound         = "not_found"          // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405, with Allow
	CodeConflict         = "conflict"           // 409
	CodeTooLarge         = "request_too_large"  // 413
	CodeUnsupportedType  = "unsupported_media_type"
	CodeTooManyRequests  = "too_many_requests" // 429, with Retry-After
	CodeUnavailable      = "temporarily_unavailable"
)

// ErrorBody is what every error answer carries.
type ErrorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// WriteJSON answers v as JSON with the status; answers are never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers an error body. description names what was wrong, in a
// sentence a caller can act on; it never carries a secret.
func WriteError(w http.ResponseWriter, status int, code, description string) {
	WriteJSON(w, status, ErrorBody{Error: code, Description: description})
}

// Decode reads r's body as one JSON object into v: application/json, at
// most MaxBodyBytes, no unknown fields, nothing after the value. On failure
// it has answered (400, 413 or 415, naming what was wrong) and returns false.
func Decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			WriteError(w, http.StatusUnsupportedMediaType, CodeUnsupportedType, "the request body must be application/json")
			return false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err == nil {
		err = decodeObject(body, v)
	}
	if err == nil {
		return true
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		WriteError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, fmt.Sprintf("the request body is over %d bytes", MaxBodyBytes))
	case errors.Is(err, errEmpty):
		WriteError(w, http.StatusBadRequest, CodeInvalidRequest, "the request body is empty; a JSON object is required")
	case errors.Is(err, errNotObject):
		WriteError(w, http.StatusBadRequest, CodeInvalidRequest, "the request body must be a JSON object")
	default:
		WriteError(w, http.StatusBadRequest, CodeInvalidRequest, "malformed JSON: "+err.Error())
	}
	return false
}

var (
	errEmpty     = errors.New("empty body")
	errNotObject = errors.New("not a JSON object")
)

// decodeObject decodes body, which must hold exactly one JSON object, into
// v. Anything else is refused, null included: decoding null into a struct
// leaves it as it was, which would read as an empty request.
func decodeObject(body []byte, v any) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0:
		return errEmpty
	case trimmed[0] != '{':
		return errNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Only white space may follow the value (Decoder.More says false for a
	// stray ']' or '}').
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the first JSON value")
	}
	return nil
}

// Route is one method and path of the JSON API ("POST /api/v1/login").
type Route struct {
	Pattern string
	Handler http.Handler
}

// Handle registers routes on mux and, for each of their paths, a 405
// answer (Allow, the error body) for the methods it lacks: without it a
// wrong method would fall through to a catch-all pattern (the public
// port's OAuth handler, a 404 in another handler's shape).
func Handle(mux *http.ServeMux, routes ...Route) {
	allowed := map[string][]string{}
	var paths []string
	for _, r := range routes {
		mux.Handle(r.Pattern, r.Handler)
		method, path, ok := strings.Cut(r.Pattern, " ")
		if !ok {
			panic("webapi: route " + r.Pattern + " names no method")
		}
		if _, seen := allowed[path]; !seen {
			paths = append(paths, path)
		}
		allowed[path] = append(allowed[path], method)
		if method == http.MethodGet {
			allowed[path] = append(allowed[path], http.MethodHead)
		}
	}
	for _, path := range paths {
		mux.Handle(path, methodNotAllowed(allowed[path]))
	}
}

func methodNotAllowed(allowed []string) http.Handler {
	allow := strings.Join(allowed, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		WriteError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, fmt.Sprintf("%s is not allowed here; allowed: %s", r.Method, allow))
	})
}
