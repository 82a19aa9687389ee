package server

import (
	"net/http"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/helixflow/helixflow/internal/pgtest"
)

// TestReplicasShareRateLimits: two replicas count one client's requests on
// the same Redis counters, so the plan's limit holds across them; the
// limit is per model, and a client over it gets 429 / RESOURCE_EXHAUSTED
// with the headers Envoy passes on.
func TestReplicasShareRateLimits(t *testing.T) {
	dsn := pgtest.StartServer(t).DSN()
	a, b := startReplica(t, dsn), startReplica(t, dsn)
	var c clientCreds
	if st := a.adminCall(t, "POST", "/admin/v1/clients", map[string]any{
		"name": "limited", "scopes": []string{"models:infer"}, "models": []string{"*"}, "plan": "free",
	}, &c); st != http.StatusCreated {
		t.Fatalf("create client: %d", st)
	}
	tok, st := a.token(t, c, "")
	if st != 200 {
		t.Fatalf("token: %d", st)
	}
	waitFor(t, func() bool { code, _ := checkCode(t, b, inferCheck(t, tok, "warmup")); return code == codes.OK })

	// Within one second: free allows 5 per model; the replicas alternate.
	for time.Now().Nanosecond() > 500_000_000 {
		time.Sleep(10 * time.Millisecond)
	}
	var codesSeen []codes.Code
	for i := range 7 {
		r := a
		if i%2 == 1 {
			r = b
		}
		code, resp := checkCode(t, r, inferCheck(t, tok, "simple"))
		codesSeen = append(codesSeen, code)
		if code == codes.ResourceExhausted && (deniedHeader(resp, "x-ratelimit-limit") != "5, 5;w=1" || deniedHeader(resp, "x-ratelimit-remaining") != "0") {
			t.Fatalf("over the limit without its headers: %v", resp)
		}
	}
	want := []codes.Code{codes.OK, codes.OK, codes.OK, codes.OK, codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}
	for i := range want {
		if codesSeen[i] != want[i] {
			t.Fatalf("7 requests in one second on a 5/s plan across two replicas: %v, want %v", codesSeen, want)
		}
	}
	if code, _ := checkCode(t, a, inferCheck(t, tok, "mlp")); code != codes.OK {
		t.Fatalf("another model's counter: %v, want OK", code)
	}
}

func deniedHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}
