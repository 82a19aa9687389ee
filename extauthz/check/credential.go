package check

import (
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/helixflow/helixflow/internal/wire"
)

// APIKeyPrefix starts every API key. A bearer credential with this prefix
// is an API key, anything else a JWT (whose base64url header can never
// start with it).
const APIKeyPrefix = "hx_"

// maxCredentialBytes bounds the authorization and x-api-key values.
const maxCredentialBytes = 8 << 10

// Header names read or written (what Envoy sends Check: wire.CheckHeaders).
const (
	hdrAuthorization = wire.HeaderAuthorization
	hdrAPIKey        = wire.HeaderAPIKey
	hdrContentType   = wire.HeaderContentType
)

// reqHeaders holds the request headers the check needs.
type reqHeaders struct {
	authorization    string
	hasAuthorization bool
	apiKey           string
	hasAPIKey        bool
	contentType      string
	streamModel      string
	hasStreamModel   bool
	// wsProtocol is Sec-WebSocket-Protocol (repeated headers joined by
	// ","), the subprotocols a WebSocket client offers.
	wsProtocol    string
	hasWSProtocol bool
	// variant is wire.HeaderVariantRequest, a tester's pick of a traffic
	// policy's variant ("\n", never a valid name, when repeated).
	variant    string
	hasVariant bool
	// wsPath: the request path ends with wire.WSPathSuffix, so a
	// credential may come in wsProtocol (set before authenticate).
	wsPath bool
	// credKind and cred are the credential authenticate used, jti the
	// token's id and sid a person's token's session.
	credKind credKind
	cred     string
	jti      string
	sid      string
	// repeated: a header we read came more than once, so which one the
	// upstream would use is unclear.
	repeated bool
	// helix lists the x-helix-* headers the client sent; they are never
	// trusted and are removed unless we set them.
	helix []string
}

// readHeaders reads the headers map, or header_map when Envoy sends raw
// headers (encode_raw_headers), where repeated headers stay separate.
func readHeaders(r *authv3.AttributeContext_HttpRequest) reqHeaders {
	var h reqHeaders
	if len(r.GetHeaders()) > 0 {
		for k, v := range r.GetHeaders() {
			h.add(k, v)
		}
		return h
	}
	for _, hv := range r.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		h.add(hv.GetKey(), v)
	}
	return h
}

func (h *reqHeaders) add(key, value string) {
	key = strings.ToLower(key)
	switch key {
	case hdrAuthorization:
		h.repeated = h.repeated || h.hasAuthorization
		h.authorization, h.hasAuthorization = value, true
	case hdrAPIKey:
		h.repeated = h.repeated || h.hasAPIKey
		h.apiKey, h.hasAPIKey = value, true
	case hdrContentType:
		// Only picks the reply format; a repeated value is not a risk.
		h.contentType = value
	case wire.HeaderWSProtocol:
		// A list header: repeats are one list (RFC 9110 5.3).
		if h.hasWSProtocol {
			value = h.wsProtocol + "," + value
		}
		h.wsProtocol, h.hasWSProtocol = value, true
	case wire.HeaderStreamModel:
		if h.hasStreamModel {
			// Two models named: no valid model name holds a newline, so
			// the target check refuses it (invalid model name).
			value = "\n"
		}
		h.streamModel, h.hasStreamModel = value, true
	case wire.HeaderVariantRequest:
		if h.hasVariant {
			// Two variants named: refused as an invalid name.
			value = "\n"
		}
		h.variant, h.hasVariant = value, true
	default:
		if strings.HasPrefix(key, wire.HeaderPrefix) {
			h.helix = append(h.helix, key)
		}
	}
}

// isGRPC reports whether the content type is gRPC's.
func isGRPC(contentType string) bool {
	ct := strings.ToLower(contentType)
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") ||
		strings.HasPrefix(ct, "application/grpc;") || strings.HasPrefix(ct, "application/grpc-web")
}

// credKind says which kind of credential a request carries.
type credKind uint8

const (
	credNone credKind = iota
	credJWT
	credAPIKey
	credBad
)

// credential picks the one credential of a request: "authorization: Bearer
// <jwt>", "authorization: Bearer hx_<key>" or "x-api-key: hx_<key>", or on
// a WebSocket path without either header "helix.bearer.<jwt or key>"
// among the subprotocols (wsCredential). Two credentials, a repeated
// header, an oversized or malformed value are credBad. The headers win
// over the subprotocol, which is then ignored (and never forwarded).
func credential(h *reqHeaders) (credKind, string) {
	switch {
	case !h.hasAuthorization && !h.hasAPIKey:
		if h.wsPath && h.hasWSProtocol {
			return wsCredential(h.wsProtocol)
		}
		return credNone, ""
	case h.repeated || (h.hasAuthorization && h.hasAPIKey):
		return credBad, ""
	case h.hasAPIKey:
		if len(h.apiKey) > maxCredentialBytes || !strings.HasPrefix(h.apiKey, APIKeyPrefix) || !isToken68(h.apiKey) {
			return credBad, ""
		}
		return credAPIKey, h.apiKey
	}
	if len(h.authorization) > maxCredentialBytes {
		return credBad, ""
	}
	tok, ok := bearer(h.authorization)
	if !ok {
		return credBad, ""
	}
	return bearerKind(tok), tok
}

// bearerKind: an API key by its prefix, else a JWT.
func bearerKind(tok string) credKind {
	if strings.HasPrefix(tok, APIKeyPrefix) {
		return credAPIKey
	}
	return credJWT
}

// wsCredential is the credential of a WebSocket's subprotocol list:
// credNone without a helix.bearer. entry, credBad for a malformed list or
// more than one entry.
func wsCredential(v string) (credKind, string) {
	o := parseWSProtocols(v)
	switch {
	case o.bad:
		return credBad, ""
	case o.tokens == 0:
		return credNone, ""
	}
	return bearerKind(o.token), o.token
}

// maxWSProtocolBytes bounds Sec-WebSocket-Protocol: a credential and a
// few protocol names.
const maxWSProtocolBytes = maxCredentialBytes + 1024

// wsOffer is what a client's Sec-WebSocket-Protocol says.
type wsOffer struct {
	// helix: it offers wire.WSProtocol.
	helix bool
	// token is the credential of the helix.bearer.<token> entry and
	// tokens the number of such entries.
	token  string
	tokens int
	// bad: not a list of tokens (RFC 6455 4.1, RFC 9110 5.6.2), an
	// empty, oversized or malformed credential, or more than one.
	bad bool
}

// parseWSProtocols reads a Sec-WebSocket-Protocol value: a comma-separated
// list of tokens, empty elements and whitespace around them ignored.
// Names are case-sensitive (RFC 6455 11.3.4). It does not allocate.
func parseWSProtocols(v string) wsOffer {
	var o wsOffer
	if len(v) > maxWSProtocolBytes {
		o.bad = true
		return o
	}
	for rest := v; rest != ""; {
		var elem string
		elem, rest, _ = strings.Cut(rest, ",")
		elem = strings.Trim(elem, " \t")
		switch {
		case elem == "":
			continue
		case !isHTTPToken(elem):
			return wsOffer{bad: true}
		case elem == wire.WSProtocol:
			o.helix = true
		case strings.HasPrefix(elem, wire.WSTokenProtocolPrefix):
			tok := elem[len(wire.WSTokenProtocolPrefix):]
			o.tokens++
			if o.tokens > 1 || len(tok) > maxCredentialBytes || !isToken68(tok) {
				return wsOffer{bad: true}
			}
			o.token = tok
		}
	}
	return o
}

// isHTTPToken: 1*tchar (RFC 9110 5.6.2), what a subprotocol name is.
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// bearer returns the token of "Bearer <token68>" (scheme case-insensitive,
// RFC 6750 2.1).
func bearer(v string) (string, bool) {
	const scheme = "bearer"
	if len(v) <= len(scheme)+1 || !strings.EqualFold(v[:len(scheme)], scheme) || v[len(scheme)] != ' ' {
		return "", false
	}
	tok := strings.TrimLeft(v[len(scheme):], " ")
	if !isToken68(tok) {
		return "", false
	}
	return tok, true
}

// isToken68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
// (RFC 7235 2.1). Everything else, SQL metacharacters included, is refused
// before any lookup.
func isToken68(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
