package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// The table of who may call which listener (the package doc): a change
// here is a change of the security model, and must be deliberate.
func TestListenerRules(t *testing.T) {
	for _, tt := range []struct {
		listener string
		got      []string
		want     []string
	}{
		{"workers", WorkerCallers(), []string{Envoy}},
		{"ext_authz", AuthzCallers(), []string{Envoy}},
		{"ADS, every type", ADSReaders(), []string{Envoy}},
	} {
		if !slices.Equal(tt.got, tt.want) {
			t.Errorf("%s accepts %v, want %v", tt.listener, tt.got, tt.want)
		}
	}
	// The lists are the callers' own copies.
	WorkerCallers()[0] = "spiffe://helixflow.local/worker/evil"
	if WorkerCallers()[0] != Envoy {
		t.Fatal("a caller changed the workers' rule for everyone")
	}
}

func TestComponentAndURI(t *testing.T) {
	if Component("envoy") != Envoy || Component("helix-authz") != Authz {
		t.Fatalf("Component: %q %q", Component("envoy"), Component("helix-authz"))
	}
	u := URI(Worker("pool-a"))
	if u.Scheme != "spiffe" || u.Host != TrustDomain || u.Path != "/worker/pool-a" {
		t.Fatalf("URI = %v", u)
	}
}

func TestFromContext(t *testing.T) {
	verified := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert(Envoy)}}}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	for _, tt := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"no peer", context.Background(), ""},
		{"plaintext peer", peer.NewContext(context.Background(), &peer.Peer{Addr: addr}), ""},
		{"TLS without a client certificate", peer.NewContext(context.Background(), &peer.Peer{Addr: addr, AuthInfo: credentials.TLSInfo{}}), ""},
		{"Envoy", peer.NewContext(context.Background(), &peer.Peer{Addr: addr, AuthInfo: credentials.TLSInfo{State: verified}}), Envoy},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := FromContext(tt.ctx)
			if id != tt.want || (tt.want == "") != errors.Is(err, ErrDenied) {
				t.Fatalf("FromContext = %q, %v; want %q", id, err, tt.want)
			}
		})
	}
}
