package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/internal/pgtest"
	"github.com/helixflow/helixflow/internal/redistest"
	"github.com/helixflow/helixflow/proto/inference"
)

const adminToken = "admin-token-for-tests-0123456789abcdef"

// replica is one running helix-authz (without its listeners' TLS, which
// the binary adds) with the Check service on a real gRPC listener.
type replica struct {
	srv    *Server
	oauth  *httptest.Server
	public *httptest.Server // the whole public port (Server.Public)
	admin  *httptest.Server
	check  authv3.AuthorizationClient
}

// testRedis is the test's one Redis: the replicas of a test share their
// rate-limit counters, as replicas in production do.
func testRedis(t *testing.T) *redistest.Server {
	t.Helper()
	redisMu.Lock()
	defer redisMu.Unlock()
	if srv, ok := redisOf[t]; ok {
		return srv
	}
	srv := redistest.Start(t)
	redisOf[t] = srv
	t.Cleanup(func() { redisMu.Lock(); delete(redisOf, t); redisMu.Unlock() })
	return srv
}

var (
	redisMu sync.Mutex
	redisOf = map[*testing.T]*redistest.Server{}
)

// startReplica starts a replica on dsn; opts change its Config.
func startReplica(t *testing.T, dsn string, opts ...func(*Config)) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := Config{
		DatabaseURL: dsn, Migrate: true, KEK: bytes.Repeat([]byte{9}, 32), AdminToken: adminToken,
		GatewayConfig: writeGatewayConfig(t, testGatewayConfig), Redis: ratelimit.RedisOptions{Address: testRedis(t).Addr},
		Issuer: "http://127.0.0.1", Audience: "helixflow", TokenLifetime: 5 * time.Minute,
		Logger: slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Run(ctx)
	r := &replica{srv: srv, oauth: httptest.NewServer(srv.OAuth), public: httptest.NewServer(srv.Public), admin: httptest.NewServer(srv.Admin)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Check.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	r.check = authv3.NewAuthorizationClient(conn)
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		r.oauth.Close()
		r.public.Close()
		r.admin.Close()
		cancel()
		srv.Close()
	})
	// The first signing key is created by the key loop.
	waitFor(t, func() bool { _, _, _, err := srv.Keys.SigningKey(ctx); return err == nil })
	return r
}

func (r *replica) adminCall(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.admin.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set(admin.OperatorHeader, "server tests")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

type clientCreds struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

func (r *replica) token(t *testing.T, c clientCreds, scope string) (string, int) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, _ := http.NewRequest(http.MethodPost, r.oauth.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ClientID, c.ClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return body.AccessToken, resp.StatusCode
}

// inferCheck is the CheckRequest Envoy sends for a gRPC ModelInfer call
// with the first 64 bytes of the body packed as bytes.
func inferCheck(t *testing.T, credential, model string) *authv3.CheckRequest {
	t.Helper()
	msg, err := proto.Marshal(&inference.ModelInferRequest{ModelName: model, Inputs: []*inference.ModelInferRequest_InferInputTensor{
		{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, 16}}}, RawInputContents: [][]byte{make([]byte, 64)}})
	if err != nil {
		t.Fatal(err)
	}
	body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	body = append(body, msg...)[:64]
	path := "/inference.GRPCInferenceService/ModelInfer"
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: path, Protocol: "HTTP/2", RawBody: body,
			Headers: map[string]string{":path": path, ":method": "POST", "content-type": "application/grpc",
				"authorization": "Bearer " + credential, "x-helix-model": "spoofed"}},
	}}}
}

func checkCode(t *testing.T, r *replica, req *authv3.CheckRequest) (codes.Code, *authv3.CheckResponse) {
	t.Helper()
	resp, err := r.check.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return codes.Code(resp.GetStatus().GetCode()), resp
}

func header(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEndToEnd drives two replicas on one real Postgres: tokens from one
// are accepted by the other, revocations and API-key changes reach the
// other within a second, and with Postgres gone issued tokens still
// validate while issuance fails with 503.
func TestEndToEnd(t *testing.T) {
	pg := pgtest.StartServer(t)
	dsn := pg.DSN()
	a := startReplica(t, dsn)
	b := startReplica(t, dsn)

	var c clientCreds
	if st := a.adminCall(t, "POST", "/admin/v1/clients", map[string]any{
		"name": "e2e", "scopes": []string{"models:simple:infer", "models:read"}, "models": []string{"simple"}, "plan": "gold",
	}, &c); st != http.StatusCreated {
		t.Fatalf("create client: %d", st)
	}
	tok, st := a.token(t, c, "")
	if st != 200 || tok == "" {
		t.Fatalf("token: %d", st)
	}

	// Replica b verifies a's token (keys shared through Postgres).
	waitFor(t, func() bool { code, _ := checkCode(t, b, inferCheck(t, tok, "simple")); return code == codes.OK })
	code, resp := checkCode(t, b, inferCheck(t, tok, "simple"))
	if code != codes.OK || header(resp, "x-helix-model") != "simple" || header(resp, "x-helix-client") != c.ClientID || header(resp, "x-helix-plan") != "gold" {
		t.Fatalf("check: %v %v", code, resp)
	}
	if code, _ := checkCode(t, b, inferCheck(t, tok, "mlp")); code != codes.PermissionDenied {
		t.Fatalf("model outside the scope: %v", code)
	}

	// Revocation on a reaches b within a second.
	form := url.Values{"token": {tok}}
	req, _ := http.NewRequest(http.MethodPost, a.oauth.URL+"/oauth2/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.ClientID, c.ClientSecret)
	rr, err := http.DefaultClient.Do(req)
	if err != nil || rr.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", rr, err)
	}
	rr.Body.Close()
	revokedAt := time.Now()
	waitFor(t, func() bool {
		code, _ := checkCode(t, b, inferCheck(t, tok, "simple"))
		return code == codes.Unauthenticated
	})
	if d := time.Since(revokedAt); d > time.Second {
		t.Fatalf("revocation took %s to reach the other replica", d)
	}

	// Disabling the client on a ends its live tokens on b within a second;
	// enabling it again does not bring them back (TestRotationEndsTokens).
	live, st := a.token(t, c, "")
	if st != 200 {
		t.Fatalf("token: %d", st)
	}
	if code, _ := checkCode(t, b, inferCheck(t, live, "simple")); code != codes.OK {
		t.Fatalf("live token: %v", code)
	}
	if st := a.adminCall(t, "PATCH", "/admin/v1/clients/"+c.ClientID, map[string]any{"enabled": false}, nil); st != http.StatusOK {
		t.Fatalf("disable: %d", st)
	}
	waitCode(t, b, "disabling the client", live, "simple", codes.Unauthenticated)
	if st := a.adminCall(t, "PATCH", "/admin/v1/clients/"+c.ClientID, map[string]any{"enabled": true}, nil); st != http.StatusOK {
		t.Fatalf("enable: %d", st)
	}

	// API keys: created on a, usable on b, revoked on a, refused on b.
	var key struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if st := a.adminCall(t, "POST", "/admin/v1/apikeys", map[string]any{"client_id": c.ClientID, "name": "k"}, &key); st != http.StatusCreated {
		t.Fatalf("create key: %d", st)
	}
	waitCode(t, b, "a new API key", key.Key, "simple", codes.OK)
	if st := a.adminCall(t, "DELETE", "/admin/v1/apikeys/"+key.ID, nil, nil); st != http.StatusNoContent {
		t.Fatalf("revoke key: %d", st)
	}
	revokedAt = time.Now()
	waitFor(t, func() bool {
		code, _ := checkCode(t, b, inferCheck(t, key.Key, "simple"))
		return code == codes.Unauthenticated
	})
	if d := time.Since(revokedAt); d > time.Second {
		t.Fatalf("API key revocation took %s to reach the other replica", d)
	}

	// Scope escalation at issuance.
	if _, st := a.token(t, c, "models:infer"); st != http.StatusBadRequest {
		t.Fatalf("escalated scope: %d", st)
	}

	// Postgres down: the tokens already issued keep validating, and unknown
	// API keys are refused, from memory.
	fresh, st := a.token(t, c, "")
	if st != 200 {
		t.Fatalf("token: %d", st)
	}
	if code, _ := checkCode(t, b, inferCheck(t, fresh, "simple")); code != codes.OK {
		t.Fatalf("fresh token: %v", code)
	}
	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	if code, _ := checkCode(t, b, inferCheck(t, fresh, "simple")); code != codes.OK {
		t.Fatalf("issued token with Postgres down: %v", code)
	}
	// Clients come from memory and issuance writes nothing: tokens are
	// still issued, and validate.
	during, st := a.token(t, c, "")
	if st != http.StatusOK {
		t.Fatalf("issuance with Postgres down: %d", st)
	}
	if code, _ := checkCode(t, b, inferCheck(t, during, "simple")); code != codes.OK {
		t.Fatalf("token issued with Postgres down: %v", code)
	}
	unknownKey := "hx_abcdefgh_" + strings.Repeat("A", 43)
	if code, _ := checkCode(t, b, inferCheck(t, unknownKey, "simple")); code != codes.Unauthenticated {
		t.Fatalf("unknown API key with Postgres down: %v (the loaded directory refuses it)", code)
	}
}
