package check

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/helixflow/helixflow/extauthz/token"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
)

func bearerHdr(tok string) map[string]string {
	return map[string]string{"authorization": "Bearer " + tok}
}

// clientBodies are every body a denial may carry: fixed strings, never
// the credential or the reason.
var clientBodies = map[string]bool{
	`{"error":"unauthorized","error_description":"credential required"}`: true,
	`{"error":"invalid_token"}`:                                                                  true,
	`{"error":"insufficient_scope"}`:                                                             true,
	`{"error":"access_denied","error_description":"route not allowed"}`:                          true,
	`{"error":"access_denied","error_description":"model name not found in request"}`:            true,
	`{"error":"access_denied","error_description":"invalid model name"}`:                         true,
	`{"error":"access_denied","error_description":"compressed gRPC messages cannot be checked"}`: true,
	`{"error":"access_denied","error_description":"malformed request message"}`:                  true,
	`{"error":"access_denied","error_description":"client not allowed"}`:                         true,
	`{"error":"temporarily_unavailable"}`:                                                        true,
	"credential required":                                                                        true, "invalid_token": true, "insufficient_scope": true, "route not allowed": true,
	"model name not found in request": true, "invalid model name": true, "temporarily_unavailable": true,
	"compressed gRPC messages cannot be checked": true, "malformed request message": true, "client not allowed": true,
}

type expect struct {
	status int    // 200, 401, 403 or 503
	body   string // exact denial body ("" = any allowed one)
	model  string // x-helix-model on OK; "" = must be removed
	grpc   bool   // the caller is gRPC
}

// check runs req and verifies the common contract of every answer.
func (e *env) check(t *testing.T, req *authv3.CheckRequest, want expect, secrets ...string) result {
	t.Helper()
	resp, err := e.svc.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check returned an RPC error: %v", err)
	}
	r := decode(t, resp)
	if r.http != want.status {
		t.Fatalf("status %d, want %d (body %q)", r.http, want.status, r.body)
	}
	if len(r.appends) > 0 || len(r.dups) > 0 {
		t.Fatalf("headers appended %v or repeated %v", r.appends, r.dups)
	}
	for _, s := range secrets {
		for k, v := range r.headers {
			if s != "" && (strings.Contains(v, s) || strings.Contains(k, s)) {
				t.Fatalf("credential leaked in header %s", k)
			}
		}
		if s != "" && strings.Contains(r.body, s) {
			t.Fatal("credential leaked in body")
		}
	}
	if r.ok {
		if r.headers["x-helix-client"] == "" {
			t.Fatal("OK without x-helix-client")
		}
		if !slices.Contains(r.remove, "authorization") || !slices.Contains(r.remove, "x-api-key") {
			t.Fatalf("credential headers not removed: %v", r.remove)
		}
		if got := r.headers["x-helix-model"]; got != want.model {
			t.Fatalf("x-helix-model = %q, want %q", got, want.model)
		}
		if want.model == "" && !slices.Contains(r.remove, "x-helix-model") {
			t.Fatalf("x-helix-model not removed: %v", r.remove)
		}
		for _, k := range r.remove {
			if _, set := r.headers[k]; set {
				t.Fatalf("header %s both set and removed", k)
			}
		}
		return r
	}
	if !clientBodies[r.body] {
		t.Fatalf("denial body %q is not one of the fixed client bodies", r.body)
	}
	if want.body != "" && r.body != want.body {
		t.Fatalf("body %q, want %q", r.body, want.body)
	}
	wantGRPC := map[int]codes.Code{401: codes.Unauthenticated, 403: codes.PermissionDenied, 503: codes.Unavailable}[want.status]
	if r.grpc != wantGRPC {
		t.Fatalf("status code %v, want %v", r.grpc, wantGRPC)
	}
	if want.grpc {
		if r.headers["grpc-status"] != map[codes.Code]string{codes.Unauthenticated: "16", codes.PermissionDenied: "7", codes.Unavailable: "14"}[wantGRPC] ||
			r.headers["grpc-message"] != r.body || r.headers["content-type"] != "application/grpc" {
			t.Fatalf("gRPC denial headers %v", r.headers)
		}
	} else if r.headers["content-type"] != "application/json" {
		t.Fatalf("content-type %q", r.headers["content-type"])
	}
	if want.status == 401 && !strings.HasPrefix(r.headers["www-authenticate"], "Bearer") {
		t.Fatalf("401 without a Bearer challenge: %v", r.headers)
	}
	return r
}

const (
	bodyInvalidToken = `{"error":"invalid_token"}`
	bodyScope        = `{"error":"insufficient_scope"}`
	bodyRoute        = `{"error":"access_denied","error_description":"route not allowed"}`
	bodyBadModel     = `{"error":"access_denied","error_description":"invalid model name"}`
	msgNoModel       = "model name not found in request"
	msgScope         = "insufficient_scope"
	msgBadBody       = "malformed request message"
	msgInvalidToken  = "invalid_token"
)

// TestCheckAttacks is issue 3's "Bad input and attacks" list, each denied
// with the right status and a fixed body.
func TestCheckAttacks(t *testing.T) {
	e := newEnv(t)
	es := e.es256(t)
	hdr := map[string]any{"alg": "ES256", "kid": testKID, "typ": "at+jwt"}
	pubDER, err := x509.MarshalPKIXPublicKey(&e.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write(in)
			return m.Sum(nil)
		}
	}
	all := e.mint(t, claims([]string{"models:infer", "models:read"}, []string{"*"}))
	resnetOnly := e.mint(t, claims([]string{"models:resnet:infer"}, []string{"resnet"}))
	parts := strings.Split(all, ".")
	sig := []byte(parts[2])
	sig[10] ^= 'A' ^ 'B'
	if sig[10] == parts[2][10] {
		sig[10] = 'C'
	}
	revokedClaims := claims([]string{"models:infer"}, []string{"*"})
	revokedClaims.JTI = "jti-revoked"
	e.revs.revoked["jti-revoked"] = true
	revoked := e.mint(t, revokedClaims)
	// A person's token whose session ended: its own jti is fine, its
	// "sid:" entry is revoked.
	endedClaims := claims([]string{"models:infer"}, []string{"*"})
	endedClaims.SessionID = "0b7f2f4e-0c55-4d1e-8f56-8a0f8f1d9c22"
	e.revs.revoked[token.RevokedSessionPrefix+endedClaims.SessionID] = true
	ofEndedSession := e.mint(t, endedClaims)
	disabledClaims := claims([]string{"models:infer"}, []string{"*"})
	disabledClaims.ClientID = "client-disabled"
	e.clis.disabled["client-disabled"] = true
	ofDisabled := e.mint(t, disabledClaims)
	e.apik.add("hx_goodkey", Principal{ClientID: "client-k", Plan: "free", Scopes: []string{"models:resnet:infer"}, Models: []string{"resnet"}})

	infer := func(model string) string { return "/v2/models/" + model + "/infer" }
	tamperedPayload := parts[0] + "." + b64([]byte(`{"iss":"`+testIssuer+`","sub":"x","aud":"`+testAudience+`","exp":9999999999,"iat":1,"jti":"j","client_id":"x","scope":"models:infer","helix_models":["*"]}`)) + "." + parts[2]
	sqlClaims := claims([]string{"models:infer"}, []string{"*"})
	sqlClaims.ClientID = "x'; DROP TABLE clients;--"
	sqlClaims.Plan = "gold' OR '1'='1"
	sqlTok := e.mint(t, sqlClaims)

	tests := []struct {
		name string
		req  *authv3.CheckRequest
		want expect
		cred string
	}{
		// Credentials.
		{"no credential", restReq("POST", infer("resnet"), nil), expect{status: 401}, ""},
		{"alg none", restReq("POST", infer("resnet"), bearerHdr(craft(t, map[string]any{"alg": "none", "kid": testKID, "typ": "at+jwt"}, payload(nil), nil))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"HS256 with the public key as secret", restReq("POST", infer("resnet"), bearerHdr(craft(t, map[string]any{"alg": "HS256", "kid": testKID, "typ": "at+jwt"}, payload(nil), hs(pubPEM)))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"HS256 with the DER key as secret", restReq("POST", infer("resnet"), bearerHdr(craft(t, map[string]any{"alg": "HS256", "kid": testKID, "typ": "at+jwt"}, payload(nil), hs(pubDER)))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"unknown kid", restReq("POST", infer("resnet"), bearerHdr(craft(t, map[string]any{"alg": "ES256", "kid": "other", "typ": "at+jwt"}, payload(nil), es))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"expired", restReq("POST", infer("resnet"), bearerHdr(craft(t, hdr, payload(func(p map[string]any) { p["exp"] = testNow.Add(-time.Hour).Unix() }), es))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"not yet valid", restReq("POST", infer("resnet"), bearerHdr(craft(t, hdr, payload(func(p map[string]any) { p["nbf"] = testNow.Add(time.Hour).Unix() }), es))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"wrong iss", restReq("POST", infer("resnet"), bearerHdr(craft(t, hdr, payload(func(p map[string]any) { p["iss"] = "https://evil.test" }), es))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"wrong aud", restReq("POST", infer("resnet"), bearerHdr(craft(t, hdr, payload(func(p map[string]any) { p["aud"] = "other-api" }), es))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"typ JWT", restReq("POST", infer("resnet"), bearerHdr(craft(t, map[string]any{"alg": "ES256", "kid": testKID, "typ": "JWT"}, payload(nil), es))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"revoked jti", restReq("POST", infer("resnet"), bearerHdr(revoked)), expect{status: 401, body: bodyInvalidToken}, revoked},
		{"ended session (sid revoked)", restReq("POST", infer("resnet"), bearerHdr(ofEndedSession)), expect{status: 401, body: bodyInvalidToken}, ofEndedSession},
		{"disabled or deleted client", restReq("POST", infer("resnet"), bearerHdr(ofDisabled)), expect{status: 401, body: bodyInvalidToken}, ofDisabled},
		{"tampered payload", restReq("POST", infer("resnet"), bearerHdr(tamperedPayload)), expect{status: 401, body: bodyInvalidToken}, tamperedPayload},
		{"tampered signature", restReq("POST", infer("resnet"), bearerHdr(parts[0]+"."+parts[1]+"."+string(sig))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"truncated token", restReq("POST", infer("resnet"), bearerHdr(all[:len(all)-3])), expect{status: 401, body: bodyInvalidToken}, ""},
		{"bad api key", restReq("POST", infer("resnet"), map[string]string{"x-api-key": "hx_wrongkey"}), expect{status: 401, body: bodyInvalidToken}, "hx_wrongkey"},

		// Garbled or oversized headers.
		{"Basic scheme", restReq("POST", infer("resnet"), map[string]string{"authorization": "Basic dXNlcjpwYXNz"}), expect{status: 401, body: bodyInvalidToken}, "dXNlcjpwYXNz"},
		{"Bearer without token", restReq("POST", infer("resnet"), map[string]string{"authorization": "Bearer "}), expect{status: 401, body: bodyInvalidToken}, ""},
		{"Bearer alone", restReq("POST", infer("resnet"), map[string]string{"authorization": "Bearer"}), expect{status: 401, body: bodyInvalidToken}, ""},
		{"two tokens", restReq("POST", infer("resnet"), map[string]string{"authorization": "Bearer " + all + " " + all}), expect{status: 401, body: bodyInvalidToken}, all},
		{"merged repeated authorization", restReq("POST", infer("resnet"), map[string]string{"authorization": "Bearer " + all + ",Bearer " + resnetOnly}), expect{status: 401, body: bodyInvalidToken}, all},
		{"token and api key", restReq("POST", infer("resnet"), map[string]string{"authorization": "Bearer " + all, "x-api-key": "hx_goodkey"}), expect{status: 401, body: bodyInvalidToken}, all},
		{"control characters", restReq("POST", infer("resnet"), map[string]string{"authorization": "Bearer " + all + "\x00"}), expect{status: 401, body: bodyInvalidToken}, all},
		{"non-ASCII", restReq("POST", infer("resnet"), map[string]string{"authorization": "Bearer \u00e9\u00e9\u00e9"}), expect{status: 401, body: bodyInvalidToken}, ""},
		{"oversized authorization", restReq("POST", infer("resnet"), map[string]string{"authorization": "Bearer " + strings.Repeat("a", 9<<10)}), expect{status: 401, body: bodyInvalidToken}, ""},
		{"oversized api key", restReq("POST", infer("resnet"), map[string]string{"x-api-key": "hx_" + strings.Repeat("a", 9<<10)}), expect{status: 401, body: bodyInvalidToken}, ""},
		{"api key without prefix", restReq("POST", infer("resnet"), map[string]string{"x-api-key": "goodkey"}), expect{status: 401, body: bodyInvalidToken}, "goodkey"},
		{"empty api key", restReq("POST", infer("resnet"), map[string]string{"x-api-key": ""}), expect{status: 401, body: bodyInvalidToken}, ""},

		// SQL metacharacters in every field.
		{"SQL in api key", restReq("POST", infer("resnet"), map[string]string{"x-api-key": "hx_x' OR '1'='1"}), expect{status: 401, body: bodyInvalidToken}, ""},
		{"SQL in bearer api key", restReq("POST", infer("resnet"), map[string]string{"authorization": "Bearer hx_x';DROP TABLE api_keys;--"}), expect{status: 401, body: bodyInvalidToken}, ""},
		{"SQL in kid", restReq("POST", infer("resnet"), bearerHdr(craft(t, map[string]any{"alg": "ES256", "kid": "k1' OR '1'='1", "typ": "at+jwt"}, payload(nil), es))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"SQL in jti", restReq("POST", infer("resnet"), bearerHdr(craft(t, hdr, payload(func(p map[string]any) { p["jti"] = "j'; DELETE FROM revoked;--"; p["iss"] = "x' OR 1=1" }), es))), expect{status: 401, body: bodyInvalidToken}, ""},
		{"SQL in client_id claim", restReq("POST", infer("resnet"), bearerHdr(sqlTok)), expect{status: 403, body: `{"error":"access_denied","error_description":"client not allowed"}`}, sqlTok},
		{"SQL in model path", restReq("POST", "/v2/models/x'%20OR%201=1;--/infer", bearerHdr(all)), expect{status: 403, body: bodyBadModel}, all},
		{"SQL in gRPC model", grpcReq("ModelInfer", inferBody(t, "a' OR '1'='1", "", 0), bearerHdr(all)), expect{status: 403, grpc: true}, all},

		// Scope escalation.
		{"infer on another model", restReq("POST", infer("bert"), bearerHdr(resnetOnly)), expect{status: 403, body: bodyScope}, resnetOnly},
		{"infer with read scope", restReq("POST", infer("resnet"), bearerHdr(e.mint(t, claims([]string{"models:read"}, []string{"*"})))), expect{status: 403, body: bodyScope}, ""},
		{"read with infer scope", restReq("GET", "/v2/models/resnet", bearerHdr(resnetOnly)), expect{status: 403, body: bodyScope}, ""},
		{"health with infer scope", restReq("GET", "/v2/health/ready", bearerHdr(resnetOnly)), expect{status: 403, body: bodyScope}, ""},
		{"wildcard scope is literal", restReq("POST", infer("bert"), bearerHdr(e.mint(t, claims([]string{"models:*:infer"}, []string{"*"})))), expect{status: 403, body: bodyScope}, ""},
		{"scope suffix trick", restReq("POST", infer("resnet:infer"), bearerHdr(resnetOnly)), expect{status: 403, body: bodyScope}, ""},
		{"model name case", restReq("POST", infer("ResNet"), bearerHdr(resnetOnly)), expect{status: 403, body: bodyScope}, ""},
		{"model list restricts models:infer", restReq("POST", infer("bert"), bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"resnet"})))), expect{status: 403, body: bodyScope}, ""},
		{"no model list", restReq("POST", infer("resnet"), bearerHdr(e.mint(t, claims([]string{"models:infer"}, nil)))), expect{status: 403, body: bodyScope}, ""},
		{"api key on another model", restReq("POST", infer("bert"), map[string]string{"x-api-key": "hx_goodkey"}), expect{status: 403, body: bodyScope}, "hx_goodkey"},
		{"stats of all models with a model list", restReq("GET", "/v2/models/stats", bearerHdr(e.mint(t, claims([]string{"models:read"}, []string{"resnet"})))), expect{status: 403, body: bodyScope}, ""},
		{"stream without models:infer", grpcReq("ModelStreamInfer", nil, bearerHdr(resnetOnly)), expect{status: 403, grpc: true}, ""},
		{"stream with a model list", grpcReq("ModelStreamInfer", nil, bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"resnet"})))), expect{status: 403, grpc: true}, ""},
		{"stream naming another model", grpcReq("ModelStreamInfer", nil, map[string]string{"authorization": "Bearer " + resnetOnly, "helix-model": "bert"}), expect{status: 403, grpc: true, body: msgScope}, resnetOnly},
		{"stream naming a bad model", grpcReq("ModelStreamInfer", nil, map[string]string{"authorization": "Bearer " + all, "helix-model": "../bert"}), expect{status: 403, grpc: true}, all},
		{"stream naming its model twice", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/inference.GRPCInferenceService/ModelStreamInfer", Protocol: "HTTP/2",
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":path", Value: "/inference.GRPCInferenceService/ModelStreamInfer"}, {Key: "content-type", Value: "application/grpc"},
				{Key: "authorization", Value: "Bearer " + resnetOnly}, {Key: "helix-model", Value: "resnet"}, {Key: "helix-model", Value: "bert"},
			}},
		}}}}, expect{status: 403, grpc: true, body: "invalid model name"}, resnetOnly},

		// Model spoofed in a header; gRPC body model not allowed.
		{"gRPC body model outside scope", grpcReq("ModelInfer", inferBody(t, "bert", "", 64), bearerHdr(resnetOnly)), expect{status: 403, grpc: true, body: msgScope}, resnetOnly},
		{"gRPC body model with spoofed header", grpcReq("ModelInfer", inferBody(t, "bert", "", 64), map[string]string{"authorization": "Bearer " + resnetOnly, "x-helix-model": "resnet"}), expect{status: 403, grpc: true}, resnetOnly},
		{"gRPC metadata outside model list", grpcReq("ModelMetadata", marshalFrame(t, &inference.ModelMetadataRequest{Name: "bert"}), bearerHdr(e.mint(t, claims([]string{"models:read"}, []string{"resnet"})))), expect{status: 403, grpc: true}, ""},

		// Garbled or oversized bodies and paths.
		{"gRPC empty body", grpcReq("ModelInfer", nil, bearerHdr(all)), expect{status: 403, grpc: true, body: msgNoModel}, ""},
		{"gRPC short frame", grpcReq("ModelInfer", []byte{0, 0, 0}, bearerHdr(all)), expect{status: 403, grpc: true}, ""},
		{"gRPC compressed", grpcReq("ModelInfer", append([]byte{1}, inferBody(t, "resnet", "", 0)[1:]...), bearerHdr(all)), expect{status: 403, grpc: true, body: "compressed gRPC messages cannot be checked"}, ""},
		{"gRPC bad flag", grpcReq("ModelInfer", append([]byte{7}, inferBody(t, "resnet", "", 0)[1:]...), bearerHdr(all)), expect{status: 403, grpc: true, body: msgBadBody}, ""},
		{"gRPC model truncated", grpcReq("ModelInfer", inferBody(t, strings.Repeat("m", 100), "", 64), bearerHdr(all)), expect{status: 403, grpc: true, body: msgNoModel}, ""},
		{"gRPC model field missing", grpcReq("ModelInfer", marshalFrame(t, &inference.ModelInferRequest{Id: "x"}), bearerHdr(all)), expect{status: 403, grpc: true, body: msgNoModel}, ""},
		{"gRPC model field as varint", grpcReq("ModelInfer", frame(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 5), 0), bearerHdr(all)), expect{status: 403, grpc: true}, ""},
		{"gRPC group wire type", grpcReq("ModelInfer", frame(protowire.AppendTag(nil, 9, protowire.StartGroupType), 0), bearerHdr(all)), expect{status: 403, grpc: true, body: msgBadBody}, ""},
		{"gRPC model field repeated", grpcReq("ModelInfer", frame(append(
			protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "resnet"),
			protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "bert")...), 0), bearerHdr(resnetOnly)), expect{status: 403, grpc: true, body: msgBadBody}, ""},
		{"gRPC model field repeated, allowed last", grpcReq("ModelInfer", frame(append(
			protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "bert"),
			protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "resnet")...), 0), bearerHdr(resnetOnly)), expect{status: 403, grpc: true, body: msgBadBody}, ""},
		{"gRPC complete message overrun", grpcReq("ModelInfer", frame([]byte{0x0a, 0x7f, 'a'}, 0), bearerHdr(all)), expect{status: 403, grpc: true}, ""},
		{"gRPC model with slash", grpcReq("ModelInfer", inferBody(t, "../secret", "", 0), bearerHdr(all)), expect{status: 403, grpc: true}, ""},
		{"gRPC bad version", grpcReq("ModelInfer", inferBody(t, "resnet", "1; DROP", 0), bearerHdr(all)), expect{status: 403, grpc: true}, ""},
		{"gRPC invalid UTF-8 model", grpcReq("ModelInfer", frame(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff, 0xfe}), 0), bearerHdr(all)), expect{status: 403, grpc: true}, ""},
		{"gRPC oversized junk body", grpcReq("ModelInfer", append([]byte{0, 0xff, 0xff, 0xff, 0xff}, []byte(strings.Repeat("\xff", 1<<20))...), bearerHdr(all)), expect{status: 403, grpc: true}, ""},
		{"gRPC method without gRPC content type", restReq("POST", "/inference.GRPCInferenceService/ModelInfer", bearerHdr(all)), expect{status: 403, body: bodyRoute}, ""},
		{"gRPC unknown method", grpcReq("RepositoryModelLoad", marshalFrame(t, &inference.ModelMetadataRequest{Name: "resnet"}), bearerHdr(all)), expect{status: 403, grpc: true}, ""},
		{"gRPC health service", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/grpc.health.v1.Health/Check", Headers: map[string]string{"content-type": "application/grpc", "authorization": "Bearer " + all}}}}}, expect{status: 403, grpc: true}, ""},
		{"path traversal encoded", restReq("POST", "/v2/models/..%2Fsecret/infer", bearerHdr(all)), expect{status: 403, body: bodyBadModel}, ""},
		{"dot dot model", restReq("POST", "/v2/models/%2e%2e/infer", bearerHdr(all)), expect{status: 403, body: bodyBadModel}, ""},
		{"encoded slash in model", restReq("POST", "/v2/models/a%2Fb/infer", bearerHdr(all)), expect{status: 403, body: bodyBadModel}, ""},
		{"model too long", restReq("POST", infer(strings.Repeat("m", 256)), bearerHdr(all)), expect{status: 403, body: bodyBadModel}, ""},
		{"model with NUL", restReq("POST", "/v2/models/a%00b/infer", bearerHdr(all)), expect{status: 403, body: bodyBadModel}, ""},
		{"bad escape", restReq("POST", "/v2/models/a%zzb/infer", bearerHdr(all)), expect{status: 403, body: bodyRoute}, ""},
		{"empty segment", restReq("POST", "/v2/models/resnet//infer", bearerHdr(all)), expect{status: 403, body: bodyRoute}, ""},
		{"trailing slash", restReq("POST", "/v2/models/resnet/infer/", bearerHdr(all)), expect{status: 403, body: bodyRoute}, ""},
		{"non-digit version", restReq("POST", "/v2/models/resnet/versions/x/infer", bearerHdr(all)), expect{status: 403, body: bodyRoute}, ""},
		{"repository API", restReq("POST", "/v2/repository/models/resnet/load", bearerHdr(all)), expect{status: 403, body: bodyRoute}, ""},
		{"generate extension's other paths", restReq("POST", "/v2/models/resnet/generate/x", bearerHdr(all)), expect{status: 403, body: bodyRoute}, ""},
		{"other prefix", restReq("GET", "/admin/clients", bearerHdr(all)), expect{status: 403, body: bodyRoute}, ""},
		{"absolute form", restReq("GET", "http://evil/v2/models/resnet", bearerHdr(all)), expect{status: 403, body: bodyRoute}, ""},
		{"empty path", restReq("GET", "", bearerHdr(all)), expect{status: 403, body: bodyRoute}, ""},
		{"no http attributes", &authv3.CheckRequest{}, expect{status: 403, body: bodyRoute}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.check(t, tc.req, tc.want, tc.cred)
		})
	}
}

// A person's token (with sid) passes while its session lives and is
// refused once "sid:"+sid is on the revocation list, whatever its jti.
func TestCheckSessionEnded(t *testing.T) {
	e := newEnv(t)
	c := claims([]string{"models:infer"}, []string{"*"})
	c.SessionID = "6d1b1f0a-5b1c-4f7e-9c0d-3e2a1b4c5d6e"
	tok := e.mint(t, c)
	req := restReq("POST", "/v2/models/resnet/infer", bearerHdr(tok))
	e.check(t, req, expect{status: 200, model: "resnet"})
	e.revs.mu.Lock()
	e.revs.revoked[token.RevokedSessionPrefix+c.SessionID] = true
	e.revs.mu.Unlock()
	e.check(t, req, expect{status: 401, body: bodyInvalidToken})
}

func TestCheckChallenge(t *testing.T) {
	e := newEnv(t)
	r := e.check(t, restReq("GET", "/v2/models/resnet", nil), expect{status: 401})
	if r.headers["www-authenticate"] != "Bearer" {
		t.Fatalf("no-credential challenge %q", r.headers["www-authenticate"])
	}
	r = e.check(t, restReq("GET", "/v2/models/resnet", bearerHdr("abc.def.ghi")), expect{status: 401})
	if r.headers["www-authenticate"] != `Bearer error="invalid_token"` {
		t.Fatalf("invalid-token challenge %q", r.headers["www-authenticate"])
	}
	tok := e.mint(t, claims([]string{"models:read"}, []string{"*"}))
	r = e.check(t, restReq("POST", "/v2/models/resnet/infer", bearerHdr(tok)), expect{status: 403})
	if r.headers["www-authenticate"] != `Bearer error="insufficient_scope"` {
		t.Fatalf("scope challenge %q", r.headers["www-authenticate"])
	}
	r = e.check(t, grpcReq("ModelInfer", nil, nil), expect{status: 401, grpc: true})
	if r.headers["grpc-status"] != "16" {
		t.Fatalf("gRPC no-credential %v", r.headers)
	}
}

// TestCheckRawHeaders covers Envoy's encode_raw_headers form, where a
// repeated header stays repeated.
func TestCheckRawHeaders(t *testing.T) {
	e := newEnv(t)
	tok := e.mint(t, claims([]string{"models:infer"}, []string{"*"}))
	raw := func(kv ...string) *authv3.CheckRequest {
		hm := &corev3.HeaderMap{}
		for i := 0; i+1 < len(kv); i += 2 {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
		}
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/v2/models/resnet/infer", HeaderMap: hm},
		}}}
	}
	e.check(t, raw("authorization", "Bearer "+tok, "x-helix-model", "bert"), expect{status: 200, model: "resnet"})
	e.check(t, raw("authorization", "Bearer "+tok, "authorization", "Bearer "+tok), expect{status: 401, body: bodyInvalidToken}, tok)
	e.check(t, raw("Authorization", "Bearer "+tok, "authorization", "Bearer x"), expect{status: 401, body: bodyInvalidToken}, tok)
	e.check(t, raw("x-api-key", "hx_a", "x-api-key", "hx_b"), expect{status: 401, body: bodyInvalidToken})
}

func TestCheckGrants(t *testing.T) {
	e := newEnv(t)
	all := e.mint(t, claims([]string{"models:infer", "models:read"}, []string{"*"}))
	resnet := e.mint(t, claims([]string{"models:resnet:infer"}, []string{"resnet"}))
	reader := e.mint(t, claims([]string{"models:read"}, []string{"resnet"}))
	e.apik.add("hx_k1", Principal{ClientID: "client-k", Plan: "free", Scopes: []string{"models:resnet:infer", "models:read"}, Models: []string{"resnet"}})

	tests := []struct {
		name     string
		req      *authv3.CheckRequest
		model    string
		client   string
		plan     string
		removed  []string
		grpcCall bool
	}{
		{"REST infer models:infer", restReq("POST", "/v2/models/bert/infer", bearerHdr(all)), "bert", "client-a", "gold", nil, false},
		{"REST infer per-model scope", restReq("POST", "/v2/models/resnet/infer", bearerHdr(resnet)), "resnet", "client-a", "gold", nil, false},
		{"REST infer with version and query", restReq("POST", "/v2/models/resnet/versions/3/infer?x=1", bearerHdr(resnet)), "resnet", "client-a", "gold", nil, false},
		{"REST infer percent-encoded", restReq("POST", "/v2/models/res%6Eet/infer", bearerHdr(resnet)), "resnet", "client-a", "gold", nil, false},
		{"REST bearer scheme lower case", restReq("POST", "/v2/models/resnet/infer", map[string]string{"authorization": "bearer " + resnet}), "resnet", "client-a", "gold", nil, false},
		{"REST metadata", restReq("GET", "/v2/models/resnet", bearerHdr(reader)), "resnet", "client-a", "gold", nil, false},
		{"REST ready", restReq("GET", "/v2/models/resnet/versions/1/ready", bearerHdr(reader)), "resnet", "client-a", "gold", nil, false},
		{"REST config", restReq("GET", "/v2/models/resnet/config", bearerHdr(reader)), "resnet", "client-a", "gold", nil, false},
		{"REST stats of a model", restReq("GET", "/v2/models/resnet/stats", bearerHdr(reader)), "resnet", "client-a", "gold", nil, false},
		{"REST model named stats", restReq("GET", "/v2/models/stats/ready", bearerHdr(all)), "stats", "client-a", "gold", nil, false},
		{"REST stats of all models", restReq("GET", "/v2/models/stats", bearerHdr(all)), "", "client-a", "gold", nil, false},
		{"REST health live", restReq("GET", "/v2/health/live", bearerHdr(reader)), "", "client-a", "gold", nil, false},
		{"REST server metadata", restReq("GET", "/v2", bearerHdr(reader)), "", "client-a", "gold", nil, false},
		{"REST spoofed x-helix headers", restReq("POST", "/v2/models/resnet/infer", map[string]string{
			"authorization": "Bearer " + resnet, "x-helix-model": "bert", "x-helix-client": "admin", "x-helix-plan": "unlimited", "x-helix-debug": "1",
		}), "resnet", "client-a", "gold", []string{"x-helix-debug"}, false},
		{"api key header", restReq("POST", "/v2/models/resnet/infer", map[string]string{"x-api-key": "hx_k1"}), "resnet", "client-k", "free", nil, false},
		{"api key as bearer", restReq("GET", "/v2/models/resnet/ready", map[string]string{"authorization": "Bearer hx_k1"}), "resnet", "client-k", "free", nil, false},
		{"gRPC ModelInfer partial body", grpcReq("ModelInfer", inferBody(t, "resnet", "2", 64), bearerHdr(resnet)), "resnet", "client-a", "gold", nil, true},
		{"gRPC ModelInfer complete body", grpcReq("ModelInfer", inferBody(t, "bert", "", 0), bearerHdr(all)), "bert", "client-a", "gold", nil, true},
		{"gRPC ModelInfer grpc+proto", grpcReq("ModelInfer", inferBody(t, "resnet", "", 64), map[string]string{"authorization": "Bearer " + resnet, "content-type": "application/grpc+proto"}), "resnet", "client-a", "gold", nil, true},
		{"gRPC ModelInfer spoofed header", grpcReq("ModelInfer", inferBody(t, "resnet", "", 64), map[string]string{"authorization": "Bearer " + resnet, "x-helix-model": "bert"}), "resnet", "client-a", "gold", nil, true},
		{"gRPC ModelMetadata", grpcReq("ModelMetadata", marshalFrame(t, &inference.ModelMetadataRequest{Name: "resnet"}), bearerHdr(reader)), "resnet", "client-a", "gold", nil, true},
		{"gRPC ModelReady", grpcReq("ModelReady", marshalFrame(t, &inference.ModelReadyRequest{Name: "resnet", Version: "1"}), bearerHdr(reader)), "resnet", "client-a", "gold", nil, true},
		{"gRPC ModelConfig", grpcReq("ModelConfig", marshalFrame(t, &inference.ModelConfigRequest{Name: "resnet"}), bearerHdr(reader)), "resnet", "client-a", "gold", nil, true},
		{"gRPC ModelStatistics of a model", grpcReq("ModelStatistics", marshalFrame(t, &inference.ModelStatisticsRequest{Name: "resnet"}), bearerHdr(reader)), "resnet", "client-a", "gold", nil, true},
		{"gRPC ModelStatistics of all", grpcReq("ModelStatistics", marshalFrame(t, &inference.ModelStatisticsRequest{}), bearerHdr(all)), "", "client-a", "gold", nil, true},
		{"gRPC ServerLive", grpcReq("ServerLive", marshalFrame(t, &inference.ServerLiveRequest{}), bearerHdr(reader)), "", "client-a", "gold", nil, true},
		{"gRPC ServerReady", grpcReq("ServerReady", nil, bearerHdr(reader)), "", "client-a", "gold", nil, true},
		{"gRPC ServerMetadata", grpcReq("ServerMetadata", nil, bearerHdr(reader)), "", "client-a", "gold", nil, true},
		{"gRPC ModelStreamInfer", grpcReq("ModelStreamInfer", nil, map[string]string{"authorization": "Bearer " + all, "x-helix-model": "bert"}), "", "client-a", "gold", nil, true},
		{"gRPC ModelStreamInfer naming its model", grpcReq("ModelStreamInfer", nil, map[string]string{"authorization": "Bearer " + resnet, "helix-model": "resnet"}), "resnet", "client-a", "gold", nil, true},
		{"gRPC api key", grpcReq("ModelInfer", inferBody(t, "resnet", "", 64), map[string]string{"x-api-key": "hx_k1"}), "resnet", "client-k", "free", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.check(t, tc.req, expect{status: 200, model: tc.model, grpc: tc.grpcCall})
			if r.headers["x-helix-client"] != tc.client || r.headers["x-helix-plan"] != tc.plan {
				t.Fatalf("identity headers %v", r.headers)
			}
			want := map[bool]int{true: 3, false: 2}[tc.model != ""]
			if strings.HasSuffix(tc.req.GetAttributes().GetRequest().GetHttp().GetPath(), "/ModelStreamInfer") {
				// A stream's credential for the worker (TestCheckStreamCredential).
				want += 2
			}
			got := len(r.headers)
			for _, h := range []string{wire.HeaderAssignment, wire.HeaderRequestedVersion} {
				if _, set := r.headers[h]; set {
					got-- // a traffic policy's: TestCheckTraffic
				}
			}
			if got != want {
				t.Fatalf("unexpected headers %v", r.headers)
			}
			for _, h := range tc.removed {
				if !slices.Contains(r.remove, h) {
					t.Fatalf("%s not removed: %v", h, r.remove)
				}
			}
			if r.metadata != nil {
				t.Fatalf("dynamic metadata %v: nothing in Envoy reads it", r.metadata)
			}
		})
	}
}

// TestCheckBackends: failures to reach a store deny with 503, never allow.
func TestCheckBackends(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env)
		req   func(e *env) *authv3.CheckRequest
		want  expect
	}{
		{"key source down", func(e *env) { e.keys.err = errBackendDown },
			func(e *env) *authv3.CheckRequest {
				return restReq("POST", "/v2/models/resnet/infer", bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
			}, expect{status: 503}},
		{"revocations down", func(e *env) { e.revs.err = errBackendDown },
			func(e *env) *authv3.CheckRequest {
				return restReq("POST", "/v2/models/resnet/infer", bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
			}, expect{status: 503}},
		{"revocations down, gRPC", func(e *env) { e.revs.err = errBackendDown },
			func(e *env) *authv3.CheckRequest {
				return grpcReq("ModelInfer", inferBody(t, "resnet", "", 64), bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
			}, expect{status: 503, grpc: true}},
		{"client store down", func(e *env) { e.clis.err = errBackendDown },
			func(e *env) *authv3.CheckRequest {
				return restReq("POST", "/v2/models/resnet/infer", bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
			}, expect{status: 503}},
		{"no client checker", func(e *env) { e.svc.clients = nil },
			func(e *env) *authv3.CheckRequest {
				return restReq("POST", "/v2/models/resnet/infer", bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
			}, expect{status: 503}},
		{"no revocation checker", func(e *env) { e.svc.revocations = nil },
			func(e *env) *authv3.CheckRequest {
				return restReq("POST", "/v2/models/resnet/infer", bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
			}, expect{status: 503}},
		{"api key store down", func(e *env) { e.apik.err = errBackendDown },
			func(e *env) *authv3.CheckRequest {
				return restReq("POST", "/v2/models/resnet/infer", map[string]string{"x-api-key": "hx_k1"})
			}, expect{status: 503}},
		{"no api key checker", func(e *env) { e.svc.apiKeys = nil },
			func(e *env) *authv3.CheckRequest {
				return restReq("POST", "/v2/models/resnet/infer", map[string]string{"x-api-key": "hx_k1"})
			}, expect{status: 401}},
		{"no verifier", func(e *env) { e.svc.verifier = nil },
			func(e *env) *authv3.CheckRequest {
				return restReq("POST", "/v2/models/resnet/infer", bearerHdr(e.mint(t, claims([]string{"models:infer"}, []string{"*"}))))
			}, expect{status: 401}},
		{"api key checker returns a principal and an error", func(e *env) { e.svc.apiKeys = bothChecker{} },
			func(e *env) *authv3.CheckRequest {
				return restReq("POST", "/v2/models/resnet/infer", map[string]string{"x-api-key": "hx_k1"})
			}, expect{status: 503}},
		{"api key checker returns nothing", func(e *env) { e.svc.apiKeys = nilChecker{} },
			func(e *env) *authv3.CheckRequest {
				return restReq("POST", "/v2/models/resnet/infer", map[string]string{"x-api-key": "hx_k1"})
			}, expect{status: 503}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.apik.add("hx_k1", Principal{ClientID: "c", Scopes: []string{"models:infer"}, Models: []string{"*"}})
			tc.setup(e)
			e.check(t, tc.req(e), tc.want)
		})
	}
}

type bothChecker struct{}

func (bothChecker) CheckAPIKey(context.Context, string) (*Principal, error) {
	return &Principal{ClientID: "c", Scopes: []string{"models:infer"}, Models: []string{"*"}}, errBackendDown
}

type nilChecker struct{}

func (nilChecker) CheckAPIKey(context.Context, string) (*Principal, error) { return nil, nil }

// TestCheckSQLNeverReachesStore: malformed keys are refused before the
// checker sees them.
func TestCheckSQLNeverReachesStore(t *testing.T) {
	e := newEnv(t)
	for _, k := range []string{"hx_' OR 1=1 --", "hx_a;DROP TABLE api_keys", "hx_\"x\"", "hx_a\nb"} {
		e.check(t, restReq("POST", "/v2/models/m/infer", map[string]string{"x-api-key": k}), expect{status: 401})
	}
	if n := e.apik.calls.Load(); n != 0 {
		t.Fatalf("checker called %d times", n)
	}
}

func TestCheckMetrics(t *testing.T) {
	e := newEnv(t)
	tok := e.mint(t, claims([]string{"models:infer"}, []string{"*"}))
	e.check(t, restReq("POST", "/v2/models/a/infer", bearerHdr(tok)), expect{status: 200, model: "a"})
	e.check(t, restReq("POST", "/v2/models/a/infer", nil), expect{status: 401})
	e.revs.err = errBackendDown
	e.check(t, restReq("POST", "/v2/models/a/infer", bearerHdr(tok)), expect{status: 503})

	for _, c := range []struct {
		result, reason string
	}{{"ok", "ok"}, {"denied", "no_credential"}, {"unavailable", "revocation_unavailable"}} {
		if v := testutil.ToFloat64(e.svc.metrics.checks.WithLabelValues(c.result, c.reason)); v != 1 {
			t.Fatalf("checks{%s,%s} = %v", c.result, c.reason, v)
		}
	}
	if n := testutil.CollectAndCount(e.reg, "helix_authz_check_duration_seconds"); n != 1 {
		t.Fatalf("duration histogram count %d", n)
	}
	// A second service on the same registry shares the collectors.
	s2 := New(Config{Metrics: e.reg})
	if s2.metrics.checks != e.svc.metrics.checks {
		t.Fatal("second service did not reuse the registered counter")
	}
}

// TestCheckClientCutoff: a token issued before its client's cutoff (a
// secret rotation, a disable) is refused; iat has whole seconds, so a
// token of the cutoff's own second is refused too.
func TestCheckClientCutoff(t *testing.T) {
	iat := testNow.Add(-time.Minute) // a whole second
	tests := []struct {
		name   string
		cutoff time.Time
		want   int
	}{
		{"no cutoff", time.Time{}, 200},
		{"cutoff a second before", iat.Add(-time.Second), 200},
		{"cutoff just before the second", iat.Add(-time.Nanosecond), 200},
		{"cutoff at iat", iat, 401},
		{"cutoff later in iat's second", iat.Add(999 * time.Millisecond), 401},
		{"cutoff a second after", iat.Add(time.Second), 401},
		{"cutoff after the check", testNow.Add(time.Hour), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			c := claims([]string{"models:infer"}, []string{"*"})
			c.IssuedAt = iat
			e.clis.validAfter[c.ClientID] = tt.cutoff
			tok := e.mint(t, c)
			want := expect{status: tt.want, model: "resnet"}
			if tt.want == 401 {
				want = expect{status: 401, body: bodyInvalidToken}
			}
			e.check(t, restReq("POST", "/v2/models/resnet/infer", bearerHdr(tok)), want, tok)
			reason := "ok"
			if tt.want == 401 {
				reason = "issued_before_client_change"
			}
			if n := testutil.ToFloat64(e.svc.metrics.checks.WithLabelValues(map[int]string{200: resultOK, 401: resultDenied}[tt.want], reason)); n != 1 {
				t.Errorf("checks_total{reason=%q} = %v, want 1", reason, n)
			}
		})
	}
}

func TestScopeGranted(t *testing.T) {
	for _, tt := range []struct {
		scope  string
		scopes []string
		want   bool
	}{
		{"models:read", []string{"models:read"}, true},
		{"models:read", []string{"models:infer"}, false},
		{"models:resnet:infer", []string{"models:infer"}, true},
		{"models:resnet:infer", []string{"models:bert:infer"}, false},
		{"models:infer", []string{"models:resnet:infer"}, false},
		{"other:infer", []string{"models:infer"}, false},
		{"models:infer", nil, false},
	} {
		if got := ScopeGranted(tt.scope, tt.scopes); got != tt.want {
			t.Errorf("ScopeGranted(%q, %q) = %v, want %v", tt.scope, tt.scopes, got, tt.want)
		}
	}
}
