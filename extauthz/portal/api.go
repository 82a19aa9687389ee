package portal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/helixflow/helixflow/extauthz/session"
	"github.com/helixflow/helixflow/extauthz/webapi"
)

// maxAnswerBytes bounds an in-process API answer the portal reads (a CSV
// export is streamed by the API itself, not through here).
const maxAnswerBytes = 16 << 20

// APIError is a JSON API error answer: its status and the
// {"error", "error_description"} body.
type APIError struct {
	Status      int
	Code        string
	Description string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("API answered %d %s: %s", e.Status, e.Code, e.Description)
}

func asAPIError(err error) (*APIError, bool) {
	var e *APIError
	ok := errors.As(err, &e)
	return e, ok
}

// api calls helix-authz's JSON API in process as r's caller: method and
// path (with its query), in marshalled as the JSON body when not nil, the
// answer decoded into out when not nil. The sub-request carries r's
// cookies, source address and user agent, the public Origin, and for a
// signed-in person the session's CSRF token, so the API judges it exactly
// as it judges the browser (throttles and audit trail included). When w is
// not nil, the answer's Set-Cookie headers (a sign-in's session cookie)
// are passed on to it. A non-2xx answer is an *APIError.
func (p *Portal) api(w http.ResponseWriter, r *http.Request, v *View, method, path string, in, out any) error {
	var body io.Reader = http.NoBody
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("portal: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	sub, err := http.NewRequestWithContext(r.Context(), method, path, body)
	if err != nil {
		return fmt.Errorf("portal: %s %s: %w", method, path, err)
	}
	sub.RemoteAddr = r.RemoteAddr
	for _, h := range []string{"Cookie", "User-Agent", "X-Forwarded-For"} {
		if val := r.Header.Values(h); len(val) > 0 {
			sub.Header[h] = val
		}
	}
	sub.Header.Set("Origin", p.cfg.PublicOrigin)
	sub.Header.Set("Accept", "application/json")
	if in != nil {
		sub.Header.Set("Content-Type", "application/json")
	}
	if v != nil && v.principal.CSRFToken != "" {
		sub.Header.Set(session.CSRFHeader, v.principal.CSRFToken)
	}
	rec := newRecorder()
	p.cfg.API.ServeHTTP(rec, sub)
	if w != nil {
		for _, c := range rec.header.Values("Set-Cookie") {
			w.Header().Add("Set-Cookie", c)
		}
	}
	if rec.status < 200 || rec.status > 299 {
		e := &APIError{Status: rec.status}
		var eb webapi.ErrorBody
		if json.Unmarshal(rec.body.Bytes(), &eb) == nil && eb.Error != "" {
			e.Code, e.Description = eb.Error, eb.Description
		} else {
			e.Description = strings.TrimSpace(rec.body.String())
		}
		if e.Description == "" {
			e.Description = http.StatusText(rec.status)
		}
		return e
	}
	if rec.overflow {
		return fmt.Errorf("portal: %s %s: the answer is over %d bytes", method, path, maxAnswerBytes)
	}
	if out != nil {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("portal: decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// recorder is the in-process sub-request's http.ResponseWriter.
type recorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(b) > maxAnswerBytes {
		r.overflow = true
		return len(b), nil
	}
	return r.body.Write(b)
}
