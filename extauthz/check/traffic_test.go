package check

import (
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
)

// TestCheckTraffic: the headers a traffic policy's routes read
// (x-helix-assignment, x-helix-requested-version, x-helix-variant) and the
// helix-variant rules.
func TestCheckTraffic(t *testing.T) {
	e := newEnv(t)
	plain := e.mint(t, claims([]string{"models:infer", "models:read"}, []string{"*"}))
	override := e.mint(t, claims([]string{"models:simple:infer", "models:read", ScopeVariantOverride}, []string{"simple"}))
	const key = "hx_variantoverride0123456789abcdefghijklmnop"
	e.apik.add(key, Principal{ClientID: "client-k", Scopes: []string{"models:infer", wire.ScopeVariantOverride}, Models: []string{"*"}})
	assignA := wire.AssignmentHeaderValue("client-a", "simple")
	with := func(tok string, kv ...string) map[string]string {
		h := map[string]string{"authorization": "Bearer " + tok}
		if strings.HasPrefix(tok, APIKeyPrefix) {
			h = map[string]string{"x-api-key": tok}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	infer := func(version string, limit int) []byte { return inferBody(t, "simple", version, limit) }
	wsHdr := func(tok string, kv ...string) map[string]string {
		return with(tok, append(kv, wire.HeaderWSProtocol, wire.WSProtocol)...)
	}
	raw := func(path string, kv ...string) *authv3.CheckRequest {
		hm := &corev3.HeaderMap{}
		for i := 0; i+1 < len(kv); i += 2 {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
		}
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: path, HeaderMap: hm},
		}}}
	}
	const (
		bodyVariantScope = `{"error":"insufficient_scope","error_description":"helix-variant needs the scope models:variant-override"}`
		bodyBadVariant   = `{"error":"invalid_request","error_description":"helix-variant: not one variant name (1 to 32 of a-z, 0-9, -)"}`
	)

	for _, tc := range []struct {
		name string
		req  *authv3.CheckRequest
		// OK answers: the three headers ("" = not set, and removed when
		// the client sent it).
		assignment, version, variant string
		// Denials: HTTP status, gRPC code and body or grpc-message.
		status int
		code   codes.Code
		body   string
	}{
		{name: "gRPC ModelInfer names a version", req: grpcReq("ModelInfer", infer("2", 0), with(plain)), assignment: assignA, version: "2"},
		{name: "gRPC version in a cut body", req: grpcReq("ModelInfer", infer("12", 24), with(plain)), assignment: assignA, version: "12"},
		{name: "gRPC ModelInfer names none", req: grpcReq("ModelInfer", infer("", 0), with(plain)), assignment: assignA},
		{name: "REST infer of a version", req: restReq("POST", "/v2/models/simple/versions/3/infer", with(plain)), assignment: assignA, version: "3"},
		{name: "REST version as written", req: restReq("POST", "/v2/models/simple/versions/007/infer", with(plain)), assignment: assignA, version: "007"},
		{name: "REST infer", req: restReq("POST", "/v2/models/simple/infer", with(plain)), assignment: assignA},
		{name: "REST generate of a version", req: restReq("POST", "/v2/models/simple/versions/4/generate", with(plain)), assignment: assignA, version: "4"},
		{name: "REST generate_stream", req: restReq("POST", "/v2/models/simple/generate_stream", with(plain)), assignment: assignA},
		{name: "WebSocket of a version", req: restReq("GET", "/v2/models/simple/versions/5/infer/ws", wsHdr(plain)), assignment: assignA, version: "5"},
		{name: "stream with helix-model", req: grpcReq("ModelStreamInfer", nil, with(plain, wire.HeaderStreamModel, "simple")), assignment: assignA},
		{name: "stream of any model: no assignment", req: grpcReq("ModelStreamInfer", nil, with(plain))},
		{name: "metadata of a version: not inference", req: restReq("GET", "/v2/models/simple/versions/2", with(plain))},
		{name: "gRPC ModelReady: not inference", req: grpcReq("ModelReady", marshalFrame(t, &inference.ModelReadyRequest{Name: "simple", Version: "2"}), with(plain))},
		{name: "assignment is the API key's client", req: restReq("POST", "/v2/models/simple/infer", with(key)),
			assignment: wire.AssignmentHeaderValue("client-k", "simple")},
		{name: "client-sent traffic headers are replaced or removed", req: restReq("POST", "/v2/models/simple/infer", with(plain,
			wire.HeaderAssignment, "1", wire.HeaderRequestedVersion, "9", wire.HeaderVariant, "canary", wire.HeaderModelVersion, "9", wire.HeaderShadow, "1")),
			assignment: assignA},

		{name: "helix-variant with the scope, REST", req: restReq("POST", "/v2/models/simple/infer", with(override, "helix-variant", "canary")),
			assignment: assignA, variant: "canary"},
		{name: "helix-variant with the scope, gRPC", req: grpcReq("ModelInfer", infer("1", 0), with(override, "helix-variant", "canary-2")),
			assignment: assignA, version: "1", variant: "canary-2"},
		{name: "helix-variant, API key with the scope", req: restReq("POST", "/v2/models/simple/infer", with(key, "helix-variant", "b")),
			assignment: wire.AssignmentHeaderValue("client-k", "simple"), variant: "b"},
		{name: "helix-variant on a model's metadata", req: restReq("GET", "/v2/models/simple", with(override, "helix-variant", "canary")), variant: "canary"},
		{name: "helix-variant on a server call: no model, not set", req: restReq("GET", "/v2/health/ready", with(override, "helix-variant", "canary"))},
		{name: "helix-variant of 32 bytes", req: restReq("POST", "/v2/models/simple/infer", with(override, "helix-variant", strings.Repeat("a", 32))),
			assignment: assignA, variant: strings.Repeat("a", 32)},

		{name: "helix-variant without the scope, REST", req: restReq("POST", "/v2/models/simple/infer", with(plain, "helix-variant", "canary")),
			status: 403, code: codes.PermissionDenied, body: bodyVariantScope},
		{name: "helix-variant without the scope, gRPC", req: grpcReq("ModelInfer", infer("", 0), with(plain, "helix-variant", "canary")),
			status: 403, code: codes.PermissionDenied, body: denyVariantScope.message},
		{name: "without the scope a bad name is still 403", req: restReq("POST", "/v2/models/simple/infer", with(plain, "helix-variant", "Bad Name")),
			status: 403, code: codes.PermissionDenied, body: bodyVariantScope},
		{name: "model refusal comes first", req: restReq("POST", "/v2/models/other/infer", with(override, "helix-variant", "canary")),
			status: 403, code: codes.PermissionDenied, body: bodyScope},
		{name: "helix-variant upper case", req: restReq("POST", "/v2/models/simple/infer", with(override, "helix-variant", "Canary")),
			status: 400, code: codes.InvalidArgument, body: bodyBadVariant},
		{name: "helix-variant empty", req: restReq("POST", "/v2/models/simple/infer", with(override, "helix-variant", "")),
			status: 400, code: codes.InvalidArgument, body: bodyBadVariant},
		{name: "helix-variant of 33 bytes", req: restReq("POST", "/v2/models/simple/infer", with(override, "helix-variant", strings.Repeat("a", 33))),
			status: 400, code: codes.InvalidArgument, body: bodyBadVariant},
		{name: "helix-variant with a newline", req: restReq("POST", "/v2/models/simple/infer", with(override, "helix-variant", "a\nx-helix-client: b")),
			status: 400, code: codes.InvalidArgument, body: bodyBadVariant},
		{name: "helix-variant bad, gRPC", req: grpcReq("ModelInfer", infer("", 0), with(override, "helix-variant", "a_b")),
			status: 400, code: codes.InvalidArgument, body: denyBadVariant.message},
		{name: "helix-variant twice", req: raw("/v2/models/simple/infer", "authorization", "Bearer "+override, "helix-variant", "a", "Helix-Variant", "b"),
			status: 400, code: codes.InvalidArgument, body: bodyBadVariant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.svc.Check(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			r := decode(t, resp)
			if len(r.appends) > 0 || len(r.dups) > 0 {
				t.Fatalf("headers appended %v or repeated %v", r.appends, r.dups)
			}
			if tc.status != 0 {
				if r.ok || r.http != tc.status || r.grpc != tc.code {
					t.Fatalf("answer %d %v, want %d %v (body %q)", r.http, r.grpc, tc.status, tc.code, r.body)
				}
				if r.body != tc.body {
					t.Fatalf("body %q, want %q", r.body, tc.body)
				}
				if r.headers["grpc-status"] != "" && r.headers["grpc-status"] != strconv.Itoa(int(tc.code)) {
					t.Fatalf("grpc-status %q, want %d", r.headers["grpc-status"], tc.code)
				}
				return
			}
			if !r.ok {
				t.Fatalf("denied %d %v %q", r.http, r.grpc, r.body)
			}
			sent := tc.req.GetAttributes().GetRequest().GetHttp().GetHeaders()
			if _, ok := sent[wire.HeaderVariantRequest]; ok && !slices.Contains(r.remove, wire.HeaderVariantRequest) {
				t.Errorf("the client's %s is not removed: %v", wire.HeaderVariantRequest, r.remove)
			}
			for name, want := range map[string]string{
				wire.HeaderAssignment: tc.assignment, wire.HeaderRequestedVersion: tc.version, wire.HeaderVariant: tc.variant,
				wire.HeaderModelVersion: "", wire.HeaderShadow: "",
			} {
				got, set := r.headers[name]
				if got != want || set != (want != "") {
					t.Errorf("%s = %q (set %v), want %q", name, got, set, want)
				}
				if _, clientSent := sent[name]; clientSent && want == "" && !strings.Contains(","+strings.Join(r.remove, ",")+",", ","+name+",") {
					t.Errorf("client-sent %s not removed: %v", name, r.remove)
				}
			}
		})
	}
}

// TestVariantDenialsNameTheRule ties the denials' literal messages (kept
// literal for docs/troubleshooting.md's test) to wire's names.
func TestVariantDenialsNameTheRule(t *testing.T) {
	for _, tc := range []struct {
		d    denial
		want []string
	}{
		{denyVariantScope, []string{wire.HeaderVariantRequest, wire.ScopeVariantOverride}},
		{denyBadVariant, []string{wire.HeaderVariantRequest + ":", "1 to " + strconv.Itoa(wire.MaxVariantNameBytes) + " "}},
	} {
		for _, w := range tc.want {
			if !strings.Contains(tc.d.message, w) {
				t.Errorf("%s: message %q does not name %q", tc.d.reason, tc.d.message, w)
			}
		}
	}
}

// TestOKResponseHeaderCount: okResponse counts its headers right (one
// allocation for all), for every combination it sets.
func TestOKResponseHeaderCount(t *testing.T) {
	p := &Principal{ClientID: "c", Plan: "free"}
	for _, tc := range []struct {
		name    string
		t       target
		h       reqHeaders
		variant string
		want    int
	}{
		{"server read", target{action: actionRead, reach: reachServer}, reqHeaders{}, "", 2},
		{"model read with a variant", target{action: actionRead, reach: reachModel, model: "m"}, reqHeaders{}, "v", 4},
		{"inference, everything", target{action: actionInfer, reach: reachModel, model: "m", version: "2", sequence: "7", stream: true, ws: true},
			reqHeaders{hasWSProtocol: true, wsProtocol: wire.WSProtocol}, "v", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := okResponse(p, tc.t, &tc.h, nil, streamCredential{id: "jti:x", expires: "9"}, tc.variant)
			got := resp.GetOkResponse().GetHeaders()
			if len(got) != tc.want || cap(got) != tc.want {
				t.Fatalf("%d headers (cap %d), want %d", len(got), cap(got), tc.want)
			}
		})
	}
}

// FuzzCheckTraffic: for any path, body and helix-variant, an allowed
// request's traffic headers say what the request says: the version its
// path or its complete gRPC message names (as protobuf reads it), the
// variant it sent (a valid name), the assignment of its client and model.
func FuzzCheckTraffic(f *testing.F) {
	e := newEnv(f)
	tok := e.mint(f, claims([]string{"models:infer", "models:read", ScopeVariantOverride}, []string{"*"}))
	f.Add("/inference.GRPCInferenceService/ModelInfer", "application/grpc", "", inferBody(f, "simple", "2", 0))
	f.Add("/inference.GRPCInferenceService/ModelInfer", "application/grpc", "canary", inferBody(f, "simple", "", 20))
	f.Add("/v2/models/simple/versions/3/infer", "application/json", "canary", []byte(nil))
	f.Add("/v2/models/simple/infer", "application/json", "Canary", []byte(nil))
	f.Add("/v2/models/a%2Fb/versions/1/infer", "application/json", "x", []byte(nil))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, path, contentType, variant string, body []byte) {
		hdrs := map[string]string{"authorization": "Bearer " + tok, "content-type": contentType, "helix-variant": variant}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: path, RawBody: body, Headers: hdrs},
		}}}
		resp, err := e.svc.Check(ctx, req)
		if err != nil || resp == nil {
			t.Fatalf("Check: %v, %v", resp, err)
		}
		r := decode(t, resp)
		if !r.ok {
			if r.http == 400 && r.grpc == codes.InvalidArgument && wire.CheckVariantName(variant) == nil {
				t.Fatalf("variant %q refused", variant)
			}
			return
		}
		if wire.CheckVariantName(variant) != nil {
			t.Fatalf("variant %q allowed", variant)
		}
		model := r.headers[wire.HeaderModel]
		if v, set := r.headers[wire.HeaderVariant]; set && (v != variant || model == "") {
			t.Fatalf("x-helix-variant %q for %q on model %q", v, variant, model)
		}
		a, set := r.headers[wire.HeaderAssignment]
		if set && (model == "" || a != wire.AssignmentHeaderValue("client-a", model)) {
			t.Fatalf("x-helix-assignment %q on model %q", a, model)
		}
		v, set := r.headers[wire.HeaderRequestedVersion]
		if !set {
			return
		}
		if wire.CheckVersion(v) != nil {
			t.Fatalf("x-helix-requested-version %q", v)
		}
		if rpc, ok := strings.CutPrefix(path, wire.GRPCServicePrefix); ok && rpc == "ModelInfer" && len(body) >= 5 {
			n := binary.BigEndian.Uint32(body[1:5])
			var m inference.ModelInferRequest
			if uint64(len(body)-5) >= uint64(n) && proto.Unmarshal(body[5:5+n], &m) == nil && m.GetModelVersion() != v {
				t.Fatalf("x-helix-requested-version %q, protobuf reads %q", v, m.GetModelVersion())
			}
		} else if !strings.Contains(path, "%") && !strings.Contains(path, "/versions/"+v+"/") {
			t.Fatalf("x-helix-requested-version %q not in path %q", v, path)
		}
	})
}

// TestScopeGrantedVariantOverride: models:infer does not grant the
// override (organizations' self-service checks scopes by ScopeGranted).
func TestScopeGrantedVariantOverride(t *testing.T) {
	for _, tc := range []struct {
		held []string
		want bool
	}{
		{[]string{ScopeInfer, ScopeRead}, false},
		{[]string{ScopeVariantOverride}, true},
		{[]string{"models:variant-override:infer"}, false},
	} {
		if got := ScopeGranted(ScopeVariantOverride, tc.held); got != tc.want {
			t.Errorf("ScopeGranted(%s, %v) = %v, want %v", ScopeVariantOverride, tc.held, got, tc.want)
		}
	}
}
