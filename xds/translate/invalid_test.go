package translate

import (
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/translate/translatetest"
)

// TestInvalidResourcesRefused checks the translator's last line of defence:
// a value that got past ir.Validate but would make Envoy NACK the update is
// refused with ErrInvalidResource, naming the resource, by every builder.
// The builders are called directly, on gateways Validate would refuse.
func TestInvalidResourcesRefused(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*ir.Gateway)
		build  func(*ir.Gateway) ([]types.Resource, error)
		want   string
	}{
		{"endpoint port out of range", func(g *ir.Gateway) { g.DefaultPool.Endpoints[0].Port = 70000 },
			endpoints, `endpoint "10.1.0.1:70000"`},
		{"model endpoint port out of range", func(g *ir.Gateway) { g.Pools[0].Endpoints[0].HTTPPort = 70000 },
			endpoints, `endpoint "10.1.0.1:70000"`},
		{"authz upstream port out of range", func(g *ir.Gateway) { g.AuthZ.Upstream.Port = 70000 },
			clusters, `cluster "` + ClusterAuthZ + `"`},
		{"health check timeout zero", func(g *ir.Gateway) { g.HealthCheck.Timeout = 0 },
			clusters, `cluster "` + ClusterDefaultGRPC + `"`},
		{"retry budget over 100%", func(g *ir.Gateway) { g.Retry.BudgetPercent = 200 },
			clusters, `cluster "` + ClusterDefaultGRPC + `"`},
		{"model name empty", func(g *ir.Gateway) { g.Pools[0].Model = "" },
			routes, `route configuration "`},
		{"source limit without a rate", func(g *ir.Gateway) { g.SourceLimit = &ir.SourceLimit{} },
			listeners, "LocalRateLimit"},
		{"listener address empty", func(g *ir.Gateway) { g.Listener.Address = "" },
			listeners, `listener "`},
		{"listener certificate file empty", func(g *ir.Gateway) { g.Listener.TLS.CertFile = "" },
			secrets, `secret "` + SecretListenerCert + `"`},
		{"worker CA file empty", func(g *ir.Gateway) {
			w := *g.Workers // shared with the other upstreams
			w.CAFile = ""
			g.Workers = &w
		},
			secrets, `secret "` + CASecret(RoleWorkers) + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := translatetest.Gateway(2, 3, 2)
			if _, err := tt.build(g); err != nil {
				t.Fatalf("valid gateway refused: %v", err)
			}
			tt.mutate(g)
			_, err := tt.build(g)
			if !errors.Is(err, ErrInvalidResource) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalidResource naming %s", err, tt.want)
			}
			// Translate itself refuses the same gateway, through Validate
			// or the builders.
			if _, err := Translate(g); err == nil {
				t.Fatal("Translate accepted the gateway")
			}
		})
	}
}

func TestTypedRefusesInvalidMessages(t *testing.T) {
	_, err := typed(&corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1 << 20}})
	if !errors.Is(err, ErrInvalidResource) || !strings.Contains(err.Error(), "envoy.config.core.v3.SocketAddress") {
		t.Fatalf("err = %v, want ErrInvalidResource naming the message type", err)
	}
	a, err := typed(&corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}})
	if err != nil || a.GetTypeUrl() != "type.googleapis.com/envoy.config.core.v3.SocketAddress" {
		t.Fatalf("typed = %v, %v", a, err)
	}
}

// TestTranslateEndpointsValidates: the EDS-only path validates its input as
// Translate does, and builds what Translate builds.
func TestTranslateEndpointsValidates(t *testing.T) {
	g := translatetest.Gateway(2, 3, 2)
	got, err := TranslateEndpoints(g)
	if err != nil {
		t.Fatal(err)
	}
	full, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(full.Endpoints) {
		t.Fatalf("TranslateEndpoints built %d assignments, Translate %d", len(got), len(full.Endpoints))
	}
	g.DefaultPool.Endpoints[0].Address = "not-an-ip"
	if _, err := TranslateEndpoints(g); err == nil {
		t.Fatal("TranslateEndpoints accepted an endpoint whose address is not an IP")
	}
}
