package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/tlsfiles"
	"github.com/helixflow/helixflow/xds/ir"
	xdsserver "github.com/helixflow/helixflow/xds/server"
	"github.com/helixflow/helixflow/xds/translate"
)

// tlsOnlyNodeCluster is the node cluster of the TLS-only Envoy; its ADS
// server serves no other.
const tlsOnlyNodeCluster = "helix-bench-tls-only"

// errNoFilter: the translator's output lacks a filter the bench removes
// (the translator changed; the comparison would no longer hold).
var errNoFilter = errors.New("filter not in the translator's output")

// tlsOnlyADS serves the TLS-only Envoy from this process: xds/server with
// the translator's resources for the bench's gateway config and worker,
// minus the ext_authz filter (which also applies the plans' rate limits).
type tlsOnlyADS struct {
	addr string
	gs   *grpc.Server
}

func (a *tlsOnlyADS) stop() { a.gs.Stop() }

// startTLSOnlyADS builds the TLS-only gateway (listener on listenPort) and
// serves it with mTLS on adsPort.
func startTLSOnlyADS(ctx context.Context, s *stack, adsPort, listenPort int) (*tlsOnlyADS, error) {
	g := s.cfg.Gateway()
	g.Listener.Port = uint32(listenPort)
	ep := ir.Endpoint{
		Address: "127.0.0.1", Port: uint32(s.workerGRPC), HTTPPort: uint32(s.workerHTTP),
		Ready: true, Versions: []string{"1"}, Worker: "bench-worker-simple",
	}
	g.Pools = []ir.Pool{{Model: "simple", Endpoints: []ir.Endpoint{ep}}}
	g.DefaultPool = ir.Pool{Endpoints: []ir.Endpoint{ep}}
	res, err := translate.Translate(g)
	if err != nil {
		return nil, fmt.Errorf("TLS-only gateway: %w", err)
	}
	if err := withoutAuthz(res); err != nil {
		return nil, fmt.Errorf("TLS-only gateway: %w", err)
	}
	srv, err := xdsserver.New(ctx, xdsserver.Options{NodeCluster: tlsOnlyNodeCluster})
	if err != nil {
		return nil, err
	}
	if err := srv.Publish(ctx, res); err != nil {
		return nil, fmt.Errorf("TLS-only gateway: %w", err)
	}
	cert, key := s.certs(pki.XDSServer)
	tc, err := tlsfiles.ServerConfig(cert, key, s.caFile())
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr(adsPort))
	if err != nil {
		return nil, err
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	srv.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	return &tlsOnlyADS{addr: addr(adsPort), gs: gs}, nil
}

var (
	extAuthzType = "type.googleapis.com/" + string(proto.MessageName(&extauthzv3.ExtAuthz{}))
	hcmType      = "type.googleapis.com/" + string(proto.MessageName(&hcmv3.HttpConnectionManager{}))
)

// withoutAuthz removes the ext_authz HTTP filter from every connection
// manager in res, and its per-route settings from the route
// configurations. Exactly one must go: anything else means the translator
// changed under the bench. (Envoy has no rate-limit filter any more:
// helix-authz applies the plans inside Check.)
func withoutAuthz(res *translate.Resources) error {
	removed := map[string]bool{} // filter names
	for _, r := range res.Listeners {
		l, ok := r.(*listenerv3.Listener)
		if !ok {
			return fmt.Errorf("listener resource is %T", r)
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetTypedConfig().GetTypeUrl() != hcmType {
					continue
				}
				var hcm hcmv3.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					return fmt.Errorf("listener %s: %w", l.GetName(), err)
				}
				kept := hcm.HttpFilters[:0]
				for _, hf := range hcm.HttpFilters {
					if hf.GetTypedConfig().GetTypeUrl() == extAuthzType {
						removed[hf.GetName()] = true
						continue
					}
					kept = append(kept, hf)
				}
				if len(kept) == len(hcm.HttpFilters) {
					continue
				}
				hcm.HttpFilters = kept
				a, err := anypb.New(&hcm)
				if err != nil {
					return err
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
			}
		}
	}
	if len(removed) != 1 {
		return fmt.Errorf("%w: ext_authz filters named %v, want one", errNoFilter, removed)
	}
	for _, r := range res.Routes {
		rc, ok := r.(*routev3.RouteConfiguration)
		if !ok {
			return fmt.Errorf("route resource is %T", r)
		}
		for _, vh := range rc.GetVirtualHosts() {
			for name := range removed {
				delete(vh.TypedPerFilterConfig, name)
				for _, rt := range vh.GetRoutes() {
					delete(rt.TypedPerFilterConfig, name)
				}
			}
		}
	}
	return nil
}
