package vtcodec

import (
	"encoding/base64"
	"encoding/binary"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// inferRequest is the CheckRequest Envoy sends for a gRPC ModelInfer with
// a bearer JWT of real size (bench/authz sends the same shape).
func inferRequest() *authv3.CheckRequest {
	b64 := base64.RawURLEncoding.EncodeToString
	jwt := b64([]byte(`{"alg":"ES256","kid":"k1","typ":"JWT"}`)) + "." +
		b64([]byte(`{"iss":"https://helix.local","sub":"client-1","aud":"helixflow","exp":1893456000,"iat":1893452400,`+
			`"jti":"0b6f5c1e6f3a4c539a517d3f3f1f0c2a","client_id":"client-1","plan":"free",`+
			`"scope":"models:simple:infer models:read","models":["simple"]}`)) + "." + b64(make([]byte, 64))
	frame := make([]byte, 64)
	binary.BigEndian.PutUint32(frame[1:], 200)
	copy(frame[5:], "\x0a\x06simple\x1a\x07bench-1")
	const path = "/inference.GRPCInferenceService/ModelInfer"
	addr := func(port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: addr(51234)},
		Destination: &authv3.AttributeContext_Peer{Address: addr(8001)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Unix(1893452400, 5)),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "1234567890", Method: "POST", Path: path, Host: "127.0.0.1:8001", Scheme: "http", Protocol: "HTTP/2",
				Headers: map[string]string{
					":authority": "127.0.0.1:8001", ":method": "POST", ":path": path, ":scheme": "http",
					"content-type": "application/grpc", "te": "trailers",
					"user-agent":           "grpc-python/1.67.0 grpc-c/43.0.0 (linux; chttp2)",
					"grpc-accept-encoding": "identity, deflate, gzip",
					"x-forwarded-proto":    "http",
					"x-request-id":         "0b6f5c1e-6f3a-4c53-9a51-7d3f3f1f0c2a",
					"authorization":        "Bearer " + jwt,
				},
				Size: 205, RawBody: frame,
			},
		},
	}}
}

// envoyRequests are CheckRequests as Envoy builds them: every field of
// the tree set somewhere, raw headers (header_map), string and raw bodies.
func envoyRequests(t testing.TB) []*authv3.CheckRequest {
	meta, err := structpb.NewStruct(map[string]any{"a": "b", "n": 1.5, "l": []any{true, nil, map[string]any{"x": "y"}}})
	if err != nil {
		t.Fatal(err)
	}
	anyMeta, err := anypb.New(meta)
	if err != nil {
		t.Fatal(err)
	}
	rest := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/p", Mode: 0o600}}},
			Service: "svc", Labels: map[string]string{"app": "x"}, Principal: "spiffe://a", Certificate: "pem",
		},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/v2/models/resnet/ready?x=1", Query: "x=1", Fragment: "f", Host: "h", Size: -1,
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":method", RawValue: []byte("GET")},
				{Key: "authorization", RawValue: []byte("Bearer hx_abc\xff")},
				{Key: "authorization", Value: "Bearer hx_def"},
				{Key: "x-api-key"},
			}},
			Body: `{"model":"resnet"}`,
		}},
		ContextExtensions: map[string]string{"route": "r1"},
		MetadataContext: &corev3.Metadata{
			FilterMetadata:      map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": meta},
			TypedFilterMetadata: map[string]*anypb.Any{"t": anyMeta},
		},
		RouteMetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"r": {}}},
		TlsSession:           &authv3.AttributeContext_TLSSession{Sni: "helix.local"},
	}}
	return []*authv3.CheckRequest{
		inferRequest(),
		rest,
		{},
		{Attributes: &authv3.AttributeContext{}},
		{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}},
		{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Headers: map[string]string{"": "", "x-helix-client": "spoofed"}, HeaderMap: &corev3.HeaderMap{},
		}}}},
	}
}

// project keeps the fields of m that Check reads: what decodeCheckRequest
// fills.
func project(m *authv3.CheckRequest) *authv3.CheckRequest {
	out := &authv3.CheckRequest{}
	a := m.GetAttributes()
	if a == nil {
		return out
	}
	out.Attributes = &authv3.AttributeContext{}
	if a.GetRequest() == nil {
		return out
	}
	out.Attributes.Request = &authv3.AttributeContext_Request{}
	h := a.GetRequest().GetHttp()
	if h == nil {
		return out
	}
	p := &authv3.AttributeContext_HttpRequest{
		Method: h.GetMethod(), Path: h.GetPath(), Headers: h.GetHeaders(), Body: h.GetBody(), RawBody: h.GetRawBody(),
	}
	if h.GetHeaderMap() != nil {
		p.HeaderMap = &corev3.HeaderMap{}
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			p.HeaderMap.Headers = append(p.HeaderMap.Headers, &corev3.HeaderValue{Key: hv.GetKey(), Value: hv.GetValue(), RawValue: hv.GetRawValue()})
		}
	}
	out.Attributes.Request.Http = p
	return out
}

// agree decodes data both ways and fails unless both refuse it, or both
// accept it and agree on every field Check reads. It returns the fast
// decoder's message and error.
func agree(t testing.TB, data []byte) (*authv3.CheckRequest, error) {
	t.Helper()
	shown := data[:min(len(data), 64)] // the start of it
	var ref authv3.CheckRequest
	refErr := proto.Unmarshal(data, &ref)
	var got authv3.CheckRequest
	err := decodeCheckRequest(data, &got)
	switch {
	case refErr != nil && err == nil:
		t.Fatalf("proto.Unmarshal refuses %x (%v), the fast decoder accepts it", shown, refErr)
	case refErr == nil && err != nil:
		t.Fatalf("proto.Unmarshal accepts %x, the fast decoder refuses it: %v", shown, err)
	case err == nil && !proto.Equal(&got, project(&ref)):
		t.Fatalf("decoding %x:\n got  %v\n want %v", shown, &got, project(&ref))
	}
	return &got, err
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzCheckRequestDecode: on any bytes, the fast decoder accepts exactly
// what proto.Unmarshal accepts, and reads the same fields Check reads.
func FuzzCheckRequestDecode(f *testing.F) {
	reqs := envoyRequests(f)
	for i, r := range reqs {
		b := marshal(f, r)
		f.Add(b)
		// Two messages back to back merge (embedded messages, maps,
		// header_map) or the later wins (strings).
		f.Add(append(b, marshal(f, reqs[(i+1)%len(reqs)])...))
	}
	for _, tt := range wireCases() {
		f.Add(tt.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		agree(t, data)
	})
}

// Wire-level builders for the table tests.
func tag(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }

func bytesField(num protowire.Number, parts ...[]byte) []byte {
	return protowire.AppendBytes(tag(num, protowire.BytesType), slices.Concat(parts...))
}

func strField(num protowire.Number, s string) []byte { return bytesField(num, []byte(s)) }

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(tag(num, protowire.VarintType), v)
}

// httpReq wraps HttpRequest fields in attributes.request.http.
func httpReq(parts ...[]byte) []byte { return bytesField(1, bytesField(4, bytesField(2, parts...))) }

// header is one headers map entry (HttpRequest field 3).
func header(entry ...[]byte) []byte { return bytesField(3, entry...) }

func kv(k, v string) []byte { return header(strField(1, k), strField(2, v)) }

// hvField is one header_map entry (HttpRequest field 13).
func hvField(parts ...[]byte) []byte { return bytesField(13, bytesField(1, parts...)) }

func want(method, path string, headers map[string]string, hm ...*corev3.HeaderValue) *authv3.CheckRequest {
	h := &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: headers}
	if hm != nil {
		h.HeaderMap = &corev3.HeaderMap{Headers: hm}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
}

type wireCase struct {
	name string
	data []byte
	want *authv3.CheckRequest // nil: refused
}

// wireCases are the rules that matter for the check's security: which of
// two values wins, merging, UTF-8, and what is malformed.
func wireCases() []wireCase {
	const bad = "ok\xff"
	group := slices.Concat(tag(20, protowire.StartGroupType), varintField(1, 7), tag(21, protowire.StartGroupType),
		tag(21, protowire.EndGroupType), tag(20, protowire.EndGroupType))
	return []wireCase{
		{"empty", nil, &authv3.CheckRequest{}},
		{"path twice: the last wins", httpReq(strField(4, "/a"), strField(4, "/b")), want("", "/b", nil)},
		{"method twice: the last wins", httpReq(strField(2, "GET"), strField(2, "POST")), want("POST", "", nil)},
		{"an empty path after a path: empty", httpReq(strField(4, "/a"), strField(4, "")), want("", "", nil)},
		{"body and raw_body twice: the last wins", httpReq(strField(11, "a"), strField(12, "x"), strField(11, "b"), strField(12, "y")),
			&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Body: "b", RawBody: []byte("y")}}}}},
		{"http twice: merged", slices.Concat(httpReq(strField(2, "GET"), kv("a", "1")), httpReq(strField(4, "/p"), kv("b", "2"))),
			want("GET", "/p", map[string]string{"a": "1", "b": "2"})},
		{"attributes and request twice: merged", slices.Concat(
			bytesField(1, bytesField(4, bytesField(2, strField(2, "GET")))), bytesField(1, bytesField(4)), bytesField(1),
			bytesField(1, bytesField(4, bytesField(2, strField(4, "/p"))))), want("GET", "/p", nil)},
		{"a header twice: the last wins", httpReq(kv("authorization", "Bearer a"), kv("authorization", "Bearer b")),
			want("", "", map[string]string{"authorization": "Bearer b"})},
		{"a map entry's key and value twice: the last wins",
			httpReq(header(strField(1, "x"), strField(2, "v1"), strField(1, "authorization"), strField(2, "v2"))),
			want("", "", map[string]string{"authorization": "v2"})},
		{"a map entry without key or value: empty", httpReq(header(strField(2, "v")), header(strField(1, "k")), header()),
			want("", "", map[string]string{"": "", "k": ""})},
		{"a map entry's unknown fields and wrong wire types: skipped",
			httpReq(header(strField(1, "k"), varintField(2, 5), strField(2, "v"), varintField(1, 3), strField(9, "z"), group)),
			want("", "", map[string]string{"k": "v"})},
		{"header_map twice: merged, entries kept in order", slices.Concat(
			httpReq(hvField(strField(1, "authorization"), strField(2, "a"))),
			httpReq(hvField(strField(1, "authorization"), strField(3, "b")))),
			want("", "", nil, &corev3.HeaderValue{Key: "authorization", Value: "a"}, &corev3.HeaderValue{Key: "authorization", RawValue: []byte("b")})},
		{"a header value's fields twice: the last wins",
			httpReq(hvField(strField(1, "a"), strField(1, "b"), strField(2, "1"), strField(2, "2"), strField(3, "x"), strField(3, "y"))),
			want("", "", nil, &corev3.HeaderValue{Key: "b", Value: "2", RawValue: []byte("y")})},
		{"raw bytes need not be UTF-8", httpReq(strField(12, bad), hvField(strField(1, "k"), strField(3, bad))),
			&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{RawBody: []byte(bad), HeaderMap: &corev3.HeaderMap{
					Headers: []*corev3.HeaderValue{{Key: "k", RawValue: []byte(bad)}}}}}}}},
		{"a known field with another wire type is an unknown field", slices.Concat(
			httpReq(varintField(4, 1), varintField(3, 1), varintField(13, 1), strField(2, "GET")),
			bytesField(1, varintField(4, 9)), varintField(1, 2)), want("GET", "", nil)},
		{"unknown fields of every wire type, groups included: skipped", slices.Concat(
			group, varintField(99, 1), protowire.AppendFixed32(tag(98, protowire.Fixed32Type), 1),
			protowire.AppendFixed64(tag(97, protowire.Fixed64Type), 1), strField(96, bad),
			httpReq(group, strField(99, bad), strField(4, "/p"))), want("", "/p", nil)},
		{"fields Check does not read, valid: skipped", slices.Concat(
			bytesField(1, bytesField(1, bytesField(1, bytesField(1, strField(2, "1.2.3.4"), varintField(3, 80)))),
				bytesField(10, strField(1, "k"), strField(2, "v")), bytesField(12, strField(1, "sni"))),
			httpReq(strField(1, "id"), strField(5, "host"), varintField(9, 1<<63), strField(10, "HTTP/2"))), want("", "", nil)},

		{"invalid UTF-8 in the path", httpReq(strField(4, bad)), nil},
		{"invalid UTF-8 in the method", httpReq(strField(2, bad)), nil},
		{"invalid UTF-8 in the body", httpReq(strField(11, bad)), nil},
		{"invalid UTF-8 in a header name", httpReq(kv(bad, "v")), nil},
		{"invalid UTF-8 in a header value", httpReq(kv("authorization", bad)), nil},
		{"invalid UTF-8 in a header value overwritten later", httpReq(kv("authorization", bad), kv("authorization", "ok")), nil},
		{"invalid UTF-8 in a header_map key", httpReq(hvField(strField(1, bad))), nil},
		{"invalid UTF-8 in a header_map value", httpReq(hvField(strField(1, "k"), strField(2, bad))), nil},
		{"invalid UTF-8 in the host (not read)", httpReq(strField(5, bad)), nil},
		{"invalid UTF-8 in a context extension (not read)", bytesField(1, bytesField(10, strField(1, "k"), strField(2, bad))), nil},
		{"invalid UTF-8 in the source address (not read)",
			bytesField(1, bytesField(1, bytesField(1, bytesField(1, strField(2, bad))))), nil},
		{"invalid UTF-8 in metadata (not read)", bytesField(1, bytesField(11, bytesField(1, strField(1, "f"),
			bytesField(2, bytesField(1, strField(1, "k"), bytesField(2, strField(3, bad))))))), nil},
		{"invalid UTF-8 in an Any's type URL (not read)", bytesField(1, bytesField(11, bytesField(2, strField(1, "f"),
			bytesField(2, strField(1, bad))))), nil},
		{"a malformed message Check does not read", bytesField(1, bytesField(2, []byte{0x0a, 0xff})), nil},
		{"a malformed map entry", httpReq(header([]byte{0x0a})), nil},
		{"a truncated length", append(tag(1, protowire.BytesType), 5, 0), nil},
		{"a truncated varint", []byte{0x08, 0x80}, nil},
		{"an overlong varint", append([]byte{0x08}, slices.Repeat([]byte{0xff}, 10)...), nil},
		{"field number 0", []byte{0x00, 0x00}, nil},
		{"a field number above the maximum", append(protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3), 0), nil},
		{"an end group without a start", tag(5, protowire.EndGroupType), nil},
		{"an end group inside http", httpReq(tag(5, protowire.EndGroupType)), nil},
		{"a group never closed", tag(5, protowire.StartGroupType), nil},
		{"a group closed by another number", slices.Concat(tag(5, protowire.StartGroupType), tag(6, protowire.EndGroupType)), nil},
		{"reserved wire type 6", []byte{0x0e}, nil},
		{"reserved wire type 7 in a known field", httpReq([]byte{0x27}), nil},
	}
}

func TestDecodeWireCases(t *testing.T) {
	for _, tt := range wireCases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := agree(t, tt.data)
			switch {
			case tt.want == nil && err == nil:
				t.Fatalf("accepted: %v", got)
			case tt.want != nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != nil && !proto.Equal(got, tt.want):
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecodeEnvoyRequests(t *testing.T) {
	reqs := envoyRequests(t)
	for i, r := range reqs {
		b := marshal(t, r)
		got, err := agree(t, b)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !proto.Equal(got, project(r)) {
			t.Fatalf("request %d: got %v, want %v", i, got, project(r))
		}
		agree(t, append(b, marshal(t, reqs[(i+1)%len(reqs)])...))
	}
}

// The decoder resets the message it is given, as proto.Unmarshal does.
func TestDecodeResets(t *testing.T) {
	m := inferRequest()
	if err := decodeCheckRequest(marshal(t, want("GET", "", nil)), m); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m, want("GET", "", nil)) {
		t.Fatalf("got %v", m)
	}
}

// nested is a CheckRequest whose metadata holds levels Structs, each in
// the one field of the one above, the innermost holding inner.
func nested(levels int, inner []byte) []byte {
	// Built inside out, backwards.
	rev := slices.Clone(inner)
	slices.Reverse(rev)
	prepend := func(b []byte) {
		for i := len(b) - 1; i >= 0; i-- {
			rev = append(rev, b[i])
		}
	}
	wrap := func(num protowire.Number) {
		prepend(protowire.AppendVarint(tag(num, protowire.BytesType), uint64(len(rev))))
	}
	for range levels {
		wrap(5)                   // Value.struct_value
		wrap(2)                   // FieldsEntry.value
		prepend(strField(1, "k")) // FieldsEntry.key
		wrap(1)                   // Struct.fields
	}
	wrap(2)                   // FilterMetadataEntry.value
	prepend(strField(1, "f")) // FilterMetadataEntry.key
	wrap(1)                   // Metadata.filter_metadata
	wrap(11)                  // AttributeContext.metadata_context
	wrap(1)                   // CheckRequest.attributes
	slices.Reverse(rev)
	return rev
}

// Nesting at proto.Unmarshal's recursion limit: both refuse at the same
// depth, whichever message or map entry it falls on.
func TestDecodeRecursionLimit(t *testing.T) {
	// viaLists puts a Struct holding inner lists deep in a Struct's
	// entry's Value: 3+2*lists levels.
	viaLists := func(lists int, inner []byte) []byte {
		v := bytesField(5, inner) // Value.struct_value
		for range lists {
			v = bytesField(6, bytesField(1, v)) // Value.list_value, ListValue.values
		}
		return bytesField(1, strField(1, "k"), bytesField(2, v))
	}
	// Struct.fields (a map) as a varint: the map's level counts before
	// its wire type is looked at.
	mapAsVarint := varintField(1, 0)
	inners := [][]byte{
		nil,
		bytesField(1, strField(1, "k")), // an entry
		bytesField(1, strField(1, "k"), bytesField(2)), // an entry and its Value
		// The map at every level mod 3.
		mapAsVarint, viaLists(1, mapAsVarint), viaLists(2, mapAsVarint),
	}
	// Each level is three (Struct, its entry, Value); about 10,000 in all.
	limit := protowire.DefaultRecursionLimit / 3
	var accepted, refused bool
	for levels := limit - 5; levels <= limit; levels++ {
		for _, inner := range inners {
			_, err := agree(t, nested(levels, inner))
			accepted, refused = accepted || err == nil, refused || err != nil
		}
	}
	if !accepted || !refused {
		t.Fatalf("the window missed the limit: accepted %v, refused %v", accepted, refused)
	}
}

// The codec decodes a CheckRequest in one buffer or several, and hands
// every other message to the proto codec.
func TestCodecUnmarshalCheckRequest(t *testing.T) {
	b := marshal(t, inferRequest())
	for _, data := range []mem.BufferSlice{
		{mem.SliceBuffer(b)},
		{mem.SliceBuffer(b[:10]), mem.SliceBuffer(b[10:100]), mem.SliceBuffer(b[100:])},
	} {
		var got authv3.CheckRequest
		if err := (Codec{}).Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, project(inferRequest())) {
			t.Fatalf("got %v", &got)
		}
	}
	var got authv3.CheckRequest
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(httpReq(strField(4, "\xff")))}, &got); err == nil ||
		!strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("invalid UTF-8: %v", err)
	}
}

// The decoder's tables come from the descriptors and assume what is true
// of every message under CheckRequest: proto3 (strings are UTF-8
// checked), no groups, no repeated scalars (packed encoding), no
// extensions, no lazy fields. A change in
// go-control-plane that breaks this fails here.
func TestSchemaAssumptions(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] {
			return
		}
		seen[md.FullName()] = true
		if md.Syntax() != protoreflect.Proto3 || md.ExtensionRanges().Len() > 0 {
			t.Errorf("%s: syntax %v, %d extension ranges", md.FullName(), md.Syntax(), md.ExtensionRanges().Len())
		}
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			opts := fd.Options().(*descriptorpb.FieldOptions)
			if fd.Kind() == protoreflect.GroupKind || opts.GetLazy() || opts.GetUnverifiedLazy() ||
				(fd.IsList() && fd.Message() == nil && fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.BytesKind) {
				t.Errorf("%s: a group, a lazy field or a repeated scalar", fd.FullName())
			}
			if fd.Message() != nil {
				walk(fd.Message())
			}
		}
	}
	walk((*authv3.CheckRequest)(nil).ProtoReflect().Descriptor())
	if len(seen) < 15 {
		t.Fatalf("walked only %d messages", len(seen))
	}
}

// decoded are the fields and getters of the request messages that the
// decoder fills.
var decoded = []string{
	"Attributes", "Request", "Http", "Method", "Path", "Headers", "Body", "RawBody", "HeaderMap", "Key", "Value", "RawValue",
}

// Check reads no field of the request that the decoder leaves empty: a
// field or getter of the request messages named in extauthz/check (not
// its tests) must be one the decoder fills.
func TestDecodesWhatCheckReads(t *testing.T) {
	names := map[string]bool{}
	for _, m := range []any{
		&authv3.CheckRequest{}, &authv3.AttributeContext{}, &authv3.AttributeContext_Request{},
		&authv3.AttributeContext_HttpRequest{}, &corev3.HeaderMap{}, &corev3.HeaderValue{},
	} {
		typ := reflect.TypeOf(m)
		for i := range typ.Elem().NumField() {
			if f := typ.Elem().Field(i); f.IsExported() {
				names[f.Name], names["Get"+f.Name] = true, true
			}
		}
	}
	for _, n := range decoded {
		delete(names, n)
		delete(names, "Get"+n)
	}
	files, err := filepath.Glob("../../extauthz/check/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("extauthz/check: %v, %d files", err, len(files))
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		imports := map[string]bool{}
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if imp.Name != nil {
				imports[imp.Name.Name] = true
			} else {
				imports[p[strings.LastIndex(p, "/")+1:]] = true
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || !names[sel.Sel.Name] {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && imports[x.Name] {
				return true // a package's name, not a field
			}
			t.Errorf("%s: Check reads %s, which the fast decoder leaves empty: decode it (internal/vtcodec)", fset.Position(sel.Pos()), sel.Sel.Name)
			return true
		})
	}
}
