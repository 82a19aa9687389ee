package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/extauthz/usage"
	"github.com/helixflow/helixflow/internal/identity"
	"github.com/helixflow/helixflow/internal/pgtest"
	counts "github.com/helixflow/helixflow/internal/usage"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
	"github.com/helixflow/helixflow/xds/registry/registrytest"
)

// TestGRPCListenerAdmission: helix-authz's gRPC listener as the binary
// builds it (handshake identity.AuthzListenerPeer, then Admission): Envoy
// calls Check and not the Ledger, a worker the Ledger and not Check, and
// any other identity does not get through the handshake.
func TestGRPCListenerAdmission(t *testing.T) {
	r := startReplica(t, pgtest.Migrated(t))
	pki := registrytest.NewPKI(t, "pool-a")
	conf := pki.Server.Clone()
	conf.VerifyConnection = identity.AuthzListenerPeer
	opts := append(GRPCOptions(), grpc.Creds(credentials.NewTLS(conf)))
	gs := grpc.NewServer(append(opts, Admission()...)...)
	r.srv.Check.Register(gs)
	r.srv.Ledger.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	dial := func(c *tls.Config) *grpc.ClientConn {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(c)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	batch := &usagev1.RecordRequest{Reporter: "worker/pool-a/b", Seq: 1, Rows: []*usagev1.UsageRow{
		{HourUnix: counts.HourOf(time.Now()), ClientId: "c1", Model: "simple", Requests: 1}}}
	check := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v2/health/ready"}}}}

	envoy := dial(pki.ClientAs(t, "envoy", identity.Envoy))
	if _, err := authv3.NewAuthorizationClient(envoy).Check(ctx, check); err != nil {
		t.Fatalf("Envoy's Check: %v", err)
	}
	if _, err := usagev1.NewLedgerClient(envoy).Record(ctx, batch); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Envoy on the Ledger: %v, want PermissionDenied", err)
	}
	worker := dial(pki.Client) // spiffe://helixflow.local/worker/pool-a
	if _, err := authv3.NewAuthorizationClient(worker).Check(ctx, check); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a worker's Check: %v, want PermissionDenied", err)
	}
	if resp, err := usagev1.NewLedgerClient(worker).Record(ctx, batch); err != nil || resp.GetDuplicate() {
		t.Fatalf("a worker on the Ledger: %v %v", resp, err)
	}
	xds := dial(pki.ClientAs(t, "xds", identity.XDS))
	if _, err := usagev1.NewLedgerClient(xds).Record(ctx, batch); status.Code(err) != codes.Unavailable {
		t.Fatalf("helix-xds's identity: %v, want the handshake refused (Unavailable)", err)
	}
}

// TestThrottledReachesLedger: requests Check refuses over the plan's limit
// are counted by helix-authz's own reporter into the ledger, under the
// client's organization-less row, and the client reads them on
// GET /api/v1/usage with its own token.
func TestThrottledReachesLedger(t *testing.T) {
	r := startReplica(t, pgtest.Migrated(t), func(c *Config) { c.UsageFlushInterval = 50 * time.Millisecond })
	var c clientCreds
	if st := r.adminCall(t, "POST", "/admin/v1/clients", map[string]any{
		"name": "limited", "scopes": []string{"models:infer"}, "models": []string{"*"}, "plan": "free",
	}, &c); st != http.StatusCreated {
		t.Fatalf("create client: %d", st)
	}
	tok, st := r.token(t, c, "")
	if st != 200 {
		t.Fatalf("token: %d", st)
	}
	throttled := 0
	for range 12 {
		if code, _ := checkCode(t, r, inferCheck(t, tok, "simple")); code == codes.ResourceExhausted {
			throttled++
		}
	}
	if throttled == 0 {
		t.Fatal("12 requests on a 5/s plan: none throttled")
	}
	var rep usage.Report
	waitFor(t, func() bool {
		req, _ := http.NewRequest("GET", r.public.URL+"/api/v1/usage", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /api/v1/usage: %d", resp.StatusCode)
		}
		rep = usage.Report{}
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			t.Fatal(err)
		}
		return rep.Totals.Throttled >= int64(throttled)
	})
	if rep.Totals.Throttled != int64(throttled) || len(rep.Rows) != 1 || rep.Rows[0].ClientID != c.ClientID || rep.Rows[0].Model != "simple" {
		t.Fatalf("usage %+v; want %d throttled on simple for %s", rep, throttled, c.ClientID)
	}
	// The admin API sees it too.
	var all usage.Report
	if st := r.adminCall(t, "GET", "/admin/v1/usage?client="+c.ClientID, nil, &all); st != 200 || all.Totals.Throttled != int64(throttled) {
		t.Fatalf("admin usage: %d %+v", st, all)
	}
	// Without a credential: 401, on both.
	for _, u := range []string{r.public.URL + "/api/v1/usage", r.admin.URL + "/admin/v1/usage"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("%s without a credential: %d", u, resp.StatusCode)
		}
	}
}

// TestUsageForPeople: with the people's API on, a member reads the
// organization's report with the session cookie or a person's token
// (helixctl login); the machine callers' endpoint refuses a person's token
// (its client, helixctl's, is every person's).
func TestUsageForPeople(t *testing.T) {
	a, _, p := peopleReplicas(t, "usage@example.test")
	var org struct {
		ID string `json:"id"`
	}
	if code, body := p.call(t, "POST", "/api/v1/orgs", map[string]string{"name": "Usage"}, &org); code != http.StatusCreated {
		t.Fatalf("create org: %d %s", code, body)
	}
	var rep usage.Report
	if code, body := p.call(t, "GET", "/api/v1/orgs/"+org.ID+"/usage?granularity=day", nil, &rep); code != 200 || rep.Granularity != "day" {
		t.Fatalf("org usage with the cookie: %d %s", code, body)
	}
	access, _ := helixctlLogin(t, a, p)
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", a.public.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var eb struct {
			Description string `json:"error_description"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		return resp.StatusCode, eb.Description
	}
	if code, desc := get("/api/v1/orgs/" + org.ID + "/usage"); code != 200 {
		t.Fatalf("org usage with a person's token: %d %s", code, desc)
	}
	if code, desc := get("/api/v1/usage"); code != http.StatusForbidden || !strings.Contains(desc, "per organization") {
		t.Fatalf("machine usage with a person's token: %d %s", code, desc)
	}
}
