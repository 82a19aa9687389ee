package limits

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/wire"
	limitsv1 "github.com/helixflow/helixflow/proto/limits/v1"
	"github.com/helixflow/helixflow/workers/infer"
)

// scripted answers Spend by the request's client id (helix-authz's side is
// tested in extauthz/limits and extauthz/server).
type scripted struct {
	limitsv1.UnimplementedLimitsServer
}

func (scripted) Spend(ctx context.Context, r *limitsv1.SpendRequest) (*limitsv1.SpendResponse, error) {
	switch r.GetClientId() {
	case "ok":
		return &limitsv1.SpendResponse{Verdict: limitsv1.SpendResponse_ALLOWED, Limit: 5, Remaining: 4, ResetUnixMs: 1_700_000_000_000}, nil
	case "over":
		return &limitsv1.SpendResponse{Verdict: limitsv1.SpendResponse_OVER_LIMIT, Limit: 5, Reason: "over"}, nil
	case "revoked":
		return &limitsv1.SpendResponse{Verdict: limitsv1.SpendResponse_REVOKED, Reason: "token revoked"}, nil
	case "slow":
		<-ctx.Done()
		return nil, ctx.Err()
	case "unspecified":
		return &limitsv1.SpendResponse{}, nil
	}
	return nil, status.Error(codes.Unavailable, "down")
}

func TestSpend(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	limitsv1.RegisterLimitsServer(gs, scripted{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := New(conn, 100*time.Millisecond)
	for _, tc := range []struct {
		client string
		want   infer.Verdict
		err    bool
	}{
		{"ok", infer.Verdict{Allowed: true, Limit: 5, Remaining: 4, Reset: time.UnixMilli(1_700_000_000_000)}, false},
		{"over", infer.Verdict{OverLimit: true, Limit: 5, Reason: "over"}, false},
		{"revoked", infer.Verdict{Revoked: true, Reason: "token revoked"}, false},
		{"slow", infer.Verdict{}, true},
		{"unspecified", infer.Verdict{}, true},
		{"down", infer.Verdict{}, true},
	} {
		t.Run(tc.client, func(t *testing.T) {
			start := time.Now()
			v, err := c.Spend(t.Context(), infer.StreamCredential{Client: tc.client, Model: "m", Credential: "jti:x"}, 1)
			if (err != nil) != tc.err || v != tc.want {
				t.Fatalf("Spend: %+v %v, want %+v (error %v)", v, err, tc.want, tc.err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Spend took %v: the deadline did not hold", d)
			}
		})
	}
}

func TestCredential(t *testing.T) {
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    infer.StreamCredential
		ok, err bool
	}{
		{"not through the gateway", map[string]string{}, infer.StreamCredential{}, false, false},
		{"token", map[string]string{wire.HeaderClient: "c", wire.HeaderModel: "m", wire.HeaderCredential: "jti:x",
			wire.HeaderExpires: strconv.FormatInt(exp.Unix(), 10)}, infer.StreamCredential{Client: "c", Model: "m", Credential: "jti:x", Expires: exp}, true, false},
		{"key without expiry", map[string]string{wire.HeaderClient: "c", wire.HeaderCredential: "key:p"},
			infer.StreamCredential{Client: "c", Credential: "key:p"}, true, false},
		{"no credential", map[string]string{wire.HeaderClient: "c"}, infer.StreamCredential{Client: "c"}, true, true},
		{"bad expiry", map[string]string{wire.HeaderClient: "c", wire.HeaderCredential: "key:p", wire.HeaderExpires: "soon"},
			infer.StreamCredential{Client: "c", Credential: "key:p"}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := Credential(func(n string) string { return tc.headers[n] })
			if ok != tc.ok || (err != nil) != tc.err || (err == nil && got != tc.want) {
				t.Fatalf("Credential: %+v %v %v", got, ok, err)
			}
			if tc.name == "no credential" && !errors.Is(err, ErrNoCredential) {
				t.Fatalf("error %v, want ErrNoCredential", err)
			}
		})
	}
}

func FuzzCredential(f *testing.F) {
	f.Add("c", "jti:x", "1700000000")
	f.Add("", "", "")
	f.Add("c", "key:p", "-1")
	f.Fuzz(func(t *testing.T, client, cred, exp string) {
		h := map[string]string{wire.HeaderClient: client, wire.HeaderCredential: cred, wire.HeaderExpires: exp}
		c, ok, err := Credential(func(n string) string { return h[n] })
		if ok != (client != "") {
			t.Fatalf("ok %v for client %q", ok, client)
		}
		if ok && err == nil && (c.Credential == "" || (exp != "" && c.Expires.IsZero())) {
			t.Fatalf("%+v from %q %q", c, cred, exp)
		}
	})
}
