package server

import (
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// newClient creates a client through a's admin API.
func newClient(t *testing.T, a *replica, scopes, models []string) clientCreds {
	t.Helper()
	var c clientCreds
	if st := a.adminCall(t, "POST", "/admin/v1/clients", map[string]any{"name": "t", "scopes": scopes, "models": models}, &c); st != http.StatusCreated {
		t.Fatalf("create client: %d", st)
	}
	return c
}

// newKey creates an API key of client (with its client's scopes).
func newKey(t *testing.T, a *replica, client string) string {
	t.Helper()
	var key struct {
		Key string `json:"key"`
	}
	if st := a.adminCall(t, "POST", "/admin/v1/apikeys", map[string]any{"client_id": client, "name": "k"}, &key); st != http.StatusCreated {
		t.Fatalf("create key: %d", st)
	}
	return key.Key
}

// waitCode waits until b answers req with want, within a second of the
// change.
func waitCode(t *testing.T, b *replica, what, cred, model string, want codes.Code) {
	t.Helper()
	changed := time.Now()
	waitFor(t, func() bool { code, _ := checkCode(t, b, inferCheck(t, cred, model)); return code == want })
	if d := time.Since(changed); d > time.Second {
		t.Fatalf("%s took %s to reach the other replica", what, d)
	}
}

// TestAPIKeyFollowsItsClient: narrowing a client (on one replica) narrows
// its API keys (on the other) within a second: a key's scopes are cut to
// its client's current ones, its models are its client's current ones.
func TestAPIKeyFollowsItsClient(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	a, b := startReplica(t, dsn), startReplica(t, dsn)
	c := newClient(t, a, []string{"models:infer", "models:read"}, []string{"simple", "mlp"})
	key := newKey(t, a, c.ClientID)
	for _, m := range []string{"simple", "mlp"} {
		waitCode(t, b, "a new key", key, m, codes.OK)
	}
	patch := func(body map[string]any) {
		t.Helper()
		if st := a.adminCall(t, "PATCH", "/admin/v1/clients/"+c.ClientID, body, nil); st != http.StatusOK {
			t.Fatalf("update client %v: %d", body, st)
		}
	}

	patch(map[string]any{"scopes": []string{"models:read"}})
	waitCode(t, b, "narrowing the client's scopes", key, "simple", codes.PermissionDenied)
	patch(map[string]any{"scopes": []string{"models:simple:infer"}})
	waitCode(t, b, "narrowing to one model's scope", key, "simple", codes.PermissionDenied) // the key's models:infer is not the client's
	patch(map[string]any{"scopes": []string{"models:infer", "models:read"}, "models": []string{"mlp"}})
	// simple is refused before and after this change: wait for the change
	// on the model it leaves.
	waitCode(t, b, "narrowing the client's models", key, "mlp", codes.OK)
	if code, _ := checkCode(t, b, inferCheck(t, key, "simple")); code != codes.PermissionDenied {
		t.Fatalf("key on the model taken away: %v", code)
	}
	// Widening the client gives the key back no more than its own scopes.
	patch(map[string]any{"scopes": []string{"models:infer", "models:read", "models:mlp:infer"}, "models": []string{"simple", "mlp"}})
	waitCode(t, b, "widening the client", key, "simple", codes.OK)
}

// TestRotationEndsTokens: rotating a client's secret, or disabling it, on
// one replica ends the tokens issued before on the other within a second;
// enabling it again does not bring them back. Tokens issued after the
// rotation's second count.
func TestRotationEndsTokens(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	a, b := startReplica(t, dsn), startReplica(t, dsn)
	c := newClient(t, a, []string{"models:infer"}, []string{"simple"})
	issue := func(c clientCreds) string {
		t.Helper()
		tok, st := a.token(t, c, "")
		if st != http.StatusOK {
			t.Fatalf("token: %d", st)
		}
		return tok
	}

	before := issue(c)
	waitCode(t, b, "a new token", before, "simple", codes.OK)
	if st := a.adminCall(t, "POST", "/admin/v1/clients/"+c.ClientID+"/rotate-secret", nil, &c); st != http.StatusOK || c.ClientSecret == "" {
		t.Fatalf("rotate secret: %d", st)
	}
	waitCode(t, b, "the secret rotation", before, "simple", codes.Unauthenticated)
	// Issued at once, in the rotation's second: the token endpoint waits
	// for the cutoff's second to pass rather than hand out a dud.
	after := issue(c)
	waitCode(t, b, "a token of the new secret", after, "simple", codes.OK)

	for _, enabled := range []bool{false, true} {
		if st := a.adminCall(t, "PATCH", "/admin/v1/clients/"+c.ClientID, map[string]any{"enabled": enabled}, nil); st != http.StatusOK {
			t.Fatalf("set enabled=%v: %d", enabled, st)
		}
	}
	waitCode(t, b, "disabling and enabling", after, "simple", codes.Unauthenticated)
	waitCode(t, b, "a token issued after enabling", issue(c), "simple", codes.OK)
}

// TestUnknownCredentialsCostNoQuery: made-up API keys, tokens of deleted
// clients and unknown client ids at /oauth2/token cost no database query,
// as counted both by helix_authz_db_lookups_total and by a proxy that sees
// every statement helix-authz sends to Postgres.
func TestUnknownCredentialsCostNoQuery(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	proxy := newCountingProxy(t, dsn)
	a := startReplica(t, proxy.dsn)
	c := newClient(t, a, []string{"models:infer"}, []string{"simple"})
	key := newKey(t, a, c.ClientID)
	gone := newClient(t, a, []string{"models:infer"}, []string{"simple"})
	goneTok, st := a.token(t, gone, "")
	if st != http.StatusOK {
		t.Fatalf("token: %d", st)
	}
	if st := a.adminCall(t, "DELETE", "/admin/v1/clients/"+gone.ClientID, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete client: %d", st)
	}
	waitFor(t, func() bool {
		code, _ := checkCode(t, a, inferCheck(t, goneTok, "simple"))
		return code == codes.Unauthenticated
	})
	if code, _ := checkCode(t, a, inferCheck(t, key, "simple")); code != codes.OK {
		t.Fatalf("valid key: %v", code)
	}

	lookups := func() float64 {
		var n float64
		for _, table := range []string{"clients", "api_keys", "revoked_tokens"} {
			n += testutil.ToFloat64(a.srv.lookups.WithLabelValues(table))
		}
		return n
	}
	lookupsBefore, statementsBefore := lookups(), proxy.statements.Load()
	const n = 300
	for range n {
		k, _, err := secret.NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := checkCode(t, a, inferCheck(t, k, "simple")); code != codes.Unauthenticated {
			t.Fatalf("made-up key: %v", code)
		}
		if code, _ := checkCode(t, a, inferCheck(t, goneTok, "simple")); code != codes.Unauthenticated {
			t.Fatalf("token of a deleted client: %v", code)
		}
		id, err := secret.NewClientSecret()
		if err != nil {
			t.Fatal(err)
		}
		if _, st := a.token(t, clientCreds{ClientID: "hxc_" + id[:20], ClientSecret: id}, ""); st != http.StatusUnauthorized {
			t.Fatalf("unknown client at /oauth2/token: %d", st)
		}
	}
	// Background work (key refresh, pings) may send a statement or two in
	// the meantime; one per request would be 3*n.
	if d := lookups() - lookupsBefore; d != 0 {
		t.Errorf("helix_authz_db_lookups_total grew by %v over %d unknown credentials, want 0", d, 3*n)
	}
	if d := proxy.statements.Load() - statementsBefore; d > 5 {
		t.Errorf("%d statements reached Postgres for %d unknown credentials, want none", d, 3*n)
	}
}

// countingProxy passes connections through to Postgres and counts the
// statements sent (extended-protocol Execute and simple Query messages).
type countingProxy struct {
	dsn        string
	statements atomic.Int64
}

func newCountingProxy(t *testing.T, dsn string) *countingProxy {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	upstream := u.Host
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Host = lis.Addr().String()
	p := &countingProxy{dsn: u.String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			down, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, down, up)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(down, up); down.Close() })
			wg.Go(func() { p.frontend(down, up); up.Close() })
		}
	})
	return p
}

// frontend copies the client's messages upstream, counting statements: a
// startup message (length first), then typed messages (type, length).
func (p *countingProxy) frontend(down io.Reader, up io.Writer) {
	var hdr [5]byte
	if _, err := io.ReadFull(down, hdr[:4]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint32(hdr[:4])) - 4
	if _, err := up.Write(hdr[:4]); err != nil {
		return
	}
	if _, err := io.CopyN(up, down, n); err != nil {
		return
	}
	for {
		if _, err := io.ReadFull(down, hdr[:]); err != nil {
			return
		}
		if hdr[0] == 'E' || hdr[0] == 'Q' {
			p.statements.Add(1)
		}
		if _, err := up.Write(hdr[:]); err != nil {
			return
		}
		if _, err := io.CopyN(up, down, int64(binary.BigEndian.Uint32(hdr[1:]))-4); err != nil {
			return
		}
	}
}
