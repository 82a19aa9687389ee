package vtcodec

import (
	"fmt"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A CheckRequest is decoded by hand: go-control-plane generates no
// UnmarshalVT, and decoding it by reflection (gRPC's proto codec) was
// about a quarter of helix-authz's CPU per Check, profiled (issue 13).
//
// decodeCheckRequest keeps only the fields extauthz/check reads
// (attributes.request.http's method, path, headers, header_map, body and
// raw_body; TestDecodesWhatCheckReads fails when Check reads another) and
// leaves every other field empty. It accepts and refuses exactly what
// proto.Unmarshal does, and where a field comes twice it keeps what
// proto.Unmarshal keeps: the last value of a string, both merged for a
// message, the last entry of a map key; a map entry without key or value
// has "". The fields it does not keep are still checked as proto.Unmarshal
// checks them (UTF-8 of proto3 strings, nested messages, nesting depth),
// with rules taken from the descriptors (schema.go), so that no request
// the reference decoder refuses reaches Check. FuzzCheckRequestDecode
// compares the two.

var checkRequestRules = newRules((*authv3.CheckRequest)(nil).ProtoReflect().Descriptor(), map[protoreflect.FullName]*msgRules{})

// decodeCheckRequest resets m and decodes b into it.
func decodeCheckRequest(b []byte, m *authv3.CheckRequest) error {
	m.Reset()
	if err := walk(checkRequestRules, b, protowire.DefaultRecursionLimit, (*checkRequest)(m)); err != nil {
		return fmt.Errorf("vtcodec: decoding envoy.service.auth.v3.CheckRequest: %w", err)
	}
	return nil
}

// The readers of the messages on the way to what Check reads. Field
// numbers are those of envoy/service/auth/v3/attribute_context.proto and
// envoy/config/core/v3/base.proto.
type (
	checkRequest     authv3.CheckRequest
	attributeContext authv3.AttributeContext
	request          authv3.AttributeContext_Request
	httpRequest      authv3.AttributeContext_HttpRequest
	headerMap        corev3.HeaderMap
	headerValue      corev3.HeaderValue
)

func (m *checkRequest) read(num protowire.Number, v []byte, f *fieldRule, depth int) (bool, error) {
	if num != 1 { // attributes
		return false, nil
	}
	if m.Attributes == nil {
		m.Attributes = &authv3.AttributeContext{}
	}
	return true, walk(f.msg, v, depth, (*attributeContext)(m.Attributes))
}

func (m *attributeContext) read(num protowire.Number, v []byte, f *fieldRule, depth int) (bool, error) {
	if num != 4 { // request
		return false, nil
	}
	if m.Request == nil {
		m.Request = &authv3.AttributeContext_Request{}
	}
	return true, walk(f.msg, v, depth, (*request)(m.Request))
}

func (m *request) read(num protowire.Number, v []byte, f *fieldRule, depth int) (bool, error) {
	if num != 2 { // http
		return false, nil
	}
	if m.Http == nil {
		m.Http = &authv3.AttributeContext_HttpRequest{}
	}
	return true, walk(f.msg, v, depth, (*httpRequest)(m.Http))
}

func (m *httpRequest) read(num protowire.Number, v []byte, f *fieldRule, depth int) (bool, error) {
	var err error
	switch num {
	case 2:
		m.Method, err = str(f, v)
	case 3:
		var k, val string
		if k, val, err = stringEntry(f.msg, v); err == nil {
			if m.Headers == nil {
				// Envoy sends a dozen headers or more: sized once.
				m.Headers = make(map[string]string, 16)
			}
			m.Headers[k] = val
		}
	case 4:
		m.Path, err = str(f, v)
	case 11:
		m.Body, err = str(f, v)
	case 12:
		m.RawBody = append([]byte(nil), v...)
	case 13:
		if m.HeaderMap == nil {
			m.HeaderMap = &corev3.HeaderMap{}
		}
		err = walk(f.msg, v, depth, (*headerMap)(m.HeaderMap))
	default:
		return false, nil
	}
	return true, err
}

func (m *headerMap) read(num protowire.Number, v []byte, f *fieldRule, depth int) (bool, error) {
	if num != 1 { // headers
		return false, nil
	}
	hv := &corev3.HeaderValue{}
	m.Headers = append(m.Headers, hv)
	return true, walk(f.msg, v, depth, (*headerValue)(hv))
}

func (m *headerValue) read(num protowire.Number, v []byte, f *fieldRule, _ int) (bool, error) {
	var err error
	switch num {
	case 1:
		m.Key, err = str(f, v)
	case 2:
		m.Value, err = str(f, v)
	case 3:
		m.RawValue = append([]byte(nil), v...)
	default:
		return false, nil
	}
	return true, err
}

// stringEntry decodes a map<string, string> entry (its rules r). It has
// no reader of its own: a map entry on the heap for each header would
// cost more than the loop below.
func stringEntry(r *msgRules, b []byte) (key, value string, err error) {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return "", "", errMalformed
		}
		b = b[n:]
		f := r.field(num)
		if f != nil && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", "", errMalformed
			}
			if num == 1 {
				key, err = str(f, v)
			} else {
				value, err = str(f, v)
			}
			if err != nil {
				return "", "", err
			}
			b = b[n:]
			continue
		}
		// Depth matters only inside messages; a map<string, string>
		// entry holds none.
		if n, err = skip(f, num, typ, b, 0); err != nil {
			return "", "", err
		}
		b = b[n:]
	}
	return key, value, nil
}

// str copies a string field's value, refusing invalid UTF-8 where
// proto.Unmarshal does.
func str(f *fieldRule, v []byte) (string, error) {
	if f.utf8 && !utf8.Valid(v) {
		return "", errUTF8
	}
	if len(v) <= maxInterned {
		if s, ok := interned[string(v)]; ok {
			return s, nil
		}
	}
	return string(v), nil
}

// interned are the header names and values (and methods) that Envoy
// sends again and again: looking one up costs no allocation, copying it
// would (a dozen per Check).
var interned = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		":authority", ":method", ":path", ":scheme", "accept", "accept-encoding", "authorization", "content-length",
		"content-type", "grpc-accept-encoding", "grpc-timeout", "te", "user-agent", "x-api-key",
		"x-envoy-expected-rq-timeout-ms", "x-envoy-internal", "x-forwarded-for", "x-forwarded-proto", "x-request-id",
		"GET", "POST", "http", "https", "trailers", "application/grpc", "application/json", "identity, deflate, gzip", "*/*",
	} {
		m[s] = s
	}
	return m
}()

// maxInterned bounds the values looked up in interned, so that long ones
// (tokens) are not hashed for nothing.
const maxInterned = 32
