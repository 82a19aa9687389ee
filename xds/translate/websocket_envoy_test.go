package translate

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/helixflow/helixflow/envoy/envoytest"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/xds/ir"
)

// wsAuthz allows every request, remembers the subprotocol header each
// Check carried, and overwrites it as helix-authz does.
type wsAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu        sync.Mutex
	protocols []string
}

func (a *wsAuthz) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	a.mu.Lock()
	a.protocols = append(a.protocols, req.GetAttributes().GetRequest().GetHttp().GetHeaders()[wire.HeaderWSProtocol])
	a.mu.Unlock()
	return &authv3.CheckResponse{
		Status: &status.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: wire.HeaderWSProtocol, Value: wire.WSProtocol},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
		}},
	}, nil
}

func (a *wsAuthz) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.protocols) == 0 {
		return ""
	}
	return a.protocols[len(a.protocols)-1]
}

// wsBackend stands in for a worker's REST port: it accepts any upgrade
// (recording its path and subprotocol) and echoes the bytes that follow.
type wsBackend struct {
	mu       sync.Mutex
	upgrades []string // "path protocol"
	plain    int
}

func (b *wsBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") == "" {
		b.mu.Lock()
		b.plain++
		b.mu.Unlock()
		_, _ = io.WriteString(w, "rest")
		return
	}
	b.mu.Lock()
	b.upgrades = append(b.upgrades, r.URL.Path+" "+r.Header.Get("Sec-WebSocket-Protocol"))
	b.mu.Unlock()
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]), wire.WSProtocol)
	if rw.Flush() != nil {
		return
	}
	_, _ = io.Copy(conn, rw)
}

func (b *wsBackend) seen() ([]string, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.upgrades...), b.plain
}

// upgrade sends a WebSocket upgrade for path through Envoy and returns the
// answer's status; on 101 it also checks that bytes go both ways.
func upgrade(t *testing.T, addr, path, protocol string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: helix\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: %s\r\n\r\n", path, protocol)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("upgrade %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != wire.WSProtocol {
		t.Errorf("upgrade %s: subprotocol %q, want %q", path, got, wire.WSProtocol)
	}
	const msg = "\x81\x05hello" // the upstream echoes raw bytes
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
		t.Fatalf("upgrade %s: echo %q, %v", path, buf, err)
	}
	return resp.StatusCode
}

// The real Envoy with the translated listener and routes: a WebSocket
// upgrade reaches the model's REST cluster only on /infer/ws paths, after
// a Check that saw the client's subprotocols and whose answer replaced
// them; on any other path Envoy refuses the upgrade and nothing reaches
// the upstream.
func TestEnvoyWebSocketUpgrade(t *testing.T) {
	envoytest.Binary(t)
	authz := &wsAuthz{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, authz)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	backend := &wsBackend{}
	srv := httptest.NewServer(backend)
	t.Cleanup(srv.Close)
	backendPort := uint32(srv.Listener.Addr().(*net.TCPAddr).Port)

	port := freeTCPPort(t)
	g := &ir.Gateway{
		Listener: ir.Listener{Address: "127.0.0.1", Port: port},
		AuthZ:    ir.AuthZ{Upstream: ir.Upstream{Address: "127.0.0.1", Port: uint32(lis.Addr().(*net.TCPAddr).Port)}},
		Pools:    []ir.Pool{{Model: "resnet"}},
	}
	g.ApplyDefaults()
	r, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	static := func(name string) *clusterv3.Cluster {
		return &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       dur(time.Second),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
					Endpoint: &endpointv3.Endpoint{Address: socketAddress("127.0.0.1", backendPort)},
				}}},
			}}},
		}
	}
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	js := publicRoutesBootstrap(t, r, static(HTTPCluster("resnet")), static(ClusterDefaultHTTP))
	if err := os.WriteFile(path, js, 0o600); err != nil {
		t.Fatal(err)
	}
	envoytest.Start(t, path)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := clientFrom("127.0.0.1")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if resp, err := c.Get("http://" + addr + wire.RESTModelPath("resnet", "", "ready")); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("Envoy's listener did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}

	offered := wire.WSProtocol + ", " + wire.WSTokenProtocolPrefix + "secret"
	for _, p := range []string{
		wire.RESTModelPath("resnet", "", "infer", "ws"),
		wire.RESTModelPath("resnet", "3", "infer", "ws"),
		wire.RESTModelPath("resnet", "", "infer", "ws") + "?trace=1",
		wire.RESTModelPath("other", "", "infer", "ws"), // no pool: the default pool's
	} {
		if code := upgrade(t, addr, p, offered); code != http.StatusSwitchingProtocols {
			t.Errorf("upgrade %s: %d, want 101", p, code)
			continue
		}
		if got := authz.last(); got != offered {
			t.Errorf("upgrade %s: Check saw %s %q, want %q", p, wire.HeaderWSProtocol, got, offered)
		}
		ups, _ := backend.seen()
		path, _, _ := strings.Cut(p, "?")
		if want := path + " " + wire.WSProtocol; len(ups) == 0 || ups[len(ups)-1] != want {
			t.Errorf("upgrade %s: upstream saw %q, want last %q (the credential must not reach it)", p, ups, want)
		}
	}
	before, plain := backend.seen()
	for _, p := range []string{
		wire.RESTModelPath("resnet", "", "infer"),
		wire.RESTModelPath("resnet", "", "ready"),
		wire.RESTModelPath("resnet", "", "infer", "ws", "x"),
		wire.RESTModelPath("resnet", "", "infer", "wsx"),
		wire.RESTModelPath("resnet", "x", "infer", "ws"),
		wire.RESTModelPath("other", "", "infer"),
		"/v2/health/ready",
		wire.GRPCModelStreamInfer,
	} {
		want := http.StatusForbidden // Envoy's upgrade_failed
		if !strings.HasPrefix(p, wire.RESTPrefix) {
			want = http.StatusNotFound // no route at all
		}
		if code := upgrade(t, addr, p, offered); code != want {
			t.Errorf("upgrade %s: %d, want %d", p, code, want)
		}
	}
	if after, plainAfter := backend.seen(); len(after) != len(before) || plainAfter != plain {
		t.Errorf("refused upgrades reached the upstream: %q, %d plain requests", after[len(before):], plainAfter-plain)
	}
}
