package check

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/extauthz/token"
	"github.com/helixflow/helixflow/proto/inference"
)

const (
	testIssuer   = "https://authz.helix.test"
	testAudience = "helix-inference"
	testKID      = "k1"
)

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// keySource is an in-memory token.KeySource.
type keySource struct {
	mu   sync.Mutex
	keys map[string]crypto.PublicKey
	err  error
}

func (k *keySource) VerificationKey(_ context.Context, kid string) (crypto.PublicKey, string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return nil, "", k.err
	}
	pub, ok := k.keys[kid]
	if !ok {
		return nil, "", token.ErrUnknownKey
	}
	return pub, token.AlgES256, nil
}

// revocations is an in-memory RevocationChecker.
type revocations struct {
	mu      sync.Mutex
	revoked map[string]bool
	err     error
}

func (r *revocations) IsRevoked(_ context.Context, jti string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return false, r.err
	}
	return r.revoked[jti], nil
}

// clients is an in-memory ClientChecker: every client is enabled unless
// listed in disabled, with the cutoff in validAfter.
type clients struct {
	mu         sync.Mutex
	disabled   map[string]bool
	validAfter map[string]time.Time
	err        error
}

func (c *clients) ClientTokens(_ context.Context, id string) (ClientTokens, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return ClientTokens{}, c.err
	}
	return ClientTokens{Enabled: !c.disabled[id], ValidAfter: c.validAfter[id]}, nil
}

// apiKeys is an in-memory APIKeyChecker keyed by the SHA-256 of the key,
// compared in constant time, as a store-backed checker would.
type apiKeys struct {
	mu    sync.Mutex
	keys  map[[32]byte]Principal
	err   error
	calls atomic.Int64
}

func (a *apiKeys) add(key string, p Principal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.keys == nil {
		a.keys = map[[32]byte]Principal{}
	}
	a.keys[sha256.Sum256([]byte(key))] = p
}

func (a *apiKeys) CheckAPIKey(_ context.Context, presented string) (*Principal, error) {
	a.calls.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return nil, a.err
	}
	h := sha256.Sum256([]byte(presented))
	for k, p := range a.keys {
		if subtle.ConstantTimeCompare(k[:], h[:]) == 1 {
			p := p
			return &p, nil
		}
	}
	return nil, ErrInvalidKey
}

// env is a Service with a real token.Verifier over in-memory stores.
type env struct {
	key  *ecdsa.PrivateKey
	keys *keySource
	revs *revocations
	clis *clients
	apik *apiKeys
	reg  *prometheus.Registry
	svc  *Service
}

func newEnv(t testing.TB) *env {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		key:  k,
		keys: &keySource{keys: map[string]crypto.PublicKey{testKID: &k.PublicKey}},
		revs: &revocations{revoked: map[string]bool{}},
		clis: &clients{disabled: map[string]bool{}, validAfter: map[string]time.Time{}},
		apik: &apiKeys{},
		reg:  prometheus.NewRegistry(),
	}
	v, err := token.NewVerifier(token.VerifierConfig{
		Issuer: testIssuer, Audience: testAudience, Keys: e.keys,
		Now: func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = New(Config{
		Verifier: v, APIKeys: e.apik, Revocations: e.revs, Clients: e.clis, Metrics: e.reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	return e
}

func claims(scopes []string, models []string) token.Claims {
	return token.Claims{
		Issuer: testIssuer, Subject: "client-a", Audience: []string{testAudience},
		ClientID: "client-a", Scopes: scopes, JTI: "jti-1",
		IssuedAt: testNow.Add(-time.Minute), ExpiresAt: testNow.Add(10 * time.Minute),
		Plan: "gold", Models: models,
	}
}

func (e *env) mint(t testing.TB, c token.Claims) string {
	t.Helper()
	raw, err := token.Sign(c, e.key, testKID, token.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func b64(v []byte) string { return base64.RawURLEncoding.EncodeToString(v) }

// craft signs header and payload of our choosing with sign (nil: no
// signature).
func craft(t testing.TB, header, payload map[string]any, sign func([]byte) []byte) string {
	t.Helper()
	hb, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(hb) + "." + b64(pb)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64(sig)
}

func payload(mut func(map[string]any)) map[string]any {
	p := map[string]any{
		"iss": testIssuer, "sub": "client-a", "aud": testAudience,
		"exp": testNow.Add(10 * time.Minute).Unix(), "iat": testNow.Add(-time.Minute).Unix(),
		"jti": "jti-1", "client_id": "client-a", "scope": "models:infer models:read",
		"helix_models": []string{"*"}, "helix_plan": "gold",
	}
	if mut != nil {
		mut(p)
	}
	return p
}

func (e *env) es256(t testing.TB) func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, e.key, d[:])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

// restReq is a CheckRequest for an HTTP request as Envoy sends it.
func restReq(method, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": method, ":path": path, "content-type": "application/json"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h, Protocol: "HTTP/1.1"},
	}}}
}

// grpcReq is a CheckRequest for a GRPCInferenceService call with the
// first body bytes packed as bytes.
func grpcReq(rpc string, body []byte, headers map[string]string) *authv3.CheckRequest {
	path := "/inference.GRPCInferenceService/" + rpc
	h := map[string]string{":method": "POST", ":path": path, "content-type": "application/grpc", "te": "trailers"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: path, Headers: h, RawBody: body, Protocol: "HTTP/2"},
	}}}
}

// frame is msg with the gRPC length prefix, cut to at most limit bytes
// (0: no cut) as Envoy's partial body would be.
func frame(msg []byte, limit int) []byte {
	out := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	out = append(out, msg...)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

func inferBody(t testing.TB, model, version string, limit int) []byte {
	t.Helper()
	m := &inference.ModelInferRequest{
		ModelName: model, ModelVersion: version, Id: "req-1",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{{
			Name: "INPUT0", Datatype: "FP32", Shape: []int64{1, 16},
		}},
		RawInputContents: [][]byte{make([]byte, 64)},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return frame(b, limit)
}

func marshalFrame(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return frame(b, 0)
}

// result is a CheckResponse taken apart.
type result struct {
	ok       bool
	http     int
	grpc     codes.Code
	headers  map[string]string
	appends  []string // headers not set with OVERWRITE_IF_EXISTS_OR_ADD
	dups     []string // headers set twice
	remove   []string
	body     string
	metadata map[string]any
}

func decode(t testing.TB, resp *authv3.CheckResponse) result {
	t.Helper()
	if resp == nil {
		t.Fatal("nil CheckResponse")
	}
	r := result{grpc: codes.Code(resp.GetStatus().GetCode()), headers: map[string]string{}}
	var hdrs []*corev3.HeaderValueOption
	switch hr := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		r.ok = true
		r.http = 200
		hdrs = hr.OkResponse.GetHeaders()
		r.remove = hr.OkResponse.GetHeadersToRemove()
	case *authv3.CheckResponse_DeniedResponse:
		r.http = int(hr.DeniedResponse.GetStatus().GetCode())
		hdrs = hr.DeniedResponse.GetHeaders()
		r.body = hr.DeniedResponse.GetBody()
	default:
		t.Fatalf("unexpected http_response %T", hr)
	}
	if r.ok != (r.grpc == codes.OK) {
		t.Fatalf("status %v does not match response kind ok=%v", r.grpc, r.ok)
	}
	for _, h := range hdrs {
		k := h.GetHeader().GetKey()
		if _, seen := r.headers[k]; seen {
			r.dups = append(r.dups, k)
		}
		r.headers[k] = h.GetHeader().GetValue()
		if h.GetAppend() != nil || h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			r.appends = append(r.appends, k)
		}
	}
	if resp.GetDynamicMetadata() != nil {
		r.metadata = resp.GetDynamicMetadata().AsMap()
	}
	return r
}

var errBackendDown = errors.New("connect: connection refused")
