package server

import (
	"context"
	"testing"

	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/translate"
)

func gatewayModel(workers ...ir.Endpoint) *ir.Gateway {
	g := &ir.Gateway{
		Listener:    ir.Listener{Address: "127.0.0.1", Port: 8443},
		AuthZ:       ir.AuthZ{Upstream: ir.Upstream{Address: "127.0.0.1", Port: 9001}},
		Pools:       []ir.Pool{{Model: "simple", Endpoints: workers}},
		DefaultPool: ir.Pool{Endpoints: workers},
	}
	g.ApplyDefaults()
	return g
}

// What xds/translate produces is accepted as is, and a worker joining
// changes the endpoints version only.
func TestPublishTranslatedGateway(t *testing.T) {
	h := start(t, Options{})
	ctx := context.Background()
	w1 := ir.Endpoint{Address: "127.0.0.1", Port: 8001, HTTPPort: 8000, Ready: true, Worker: "w1"}
	res, err := translate.Translate(gatewayModel(w1))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Publish(ctx, res); err != nil {
		t.Fatalf("Publish(translate output) = %v", err)
	}
	before := h.srv.Status().Versions

	w2 := ir.Endpoint{Address: "127.0.0.1", Port: 8011, HTTPPort: 8010, Ready: true, Worker: "w2"}
	res, err = translate.Translate(gatewayModel(w1, w2))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Publish(ctx, res); err != nil {
		t.Fatal(err)
	}
	after := h.srv.Status().Versions
	if after[CacheConfig] != before[CacheConfig] {
		t.Fatalf("a new worker changed the config cache: %+v -> %+v", before[CacheConfig], after[CacheConfig])
	}
	if after[CacheEndpoints].Version == before[CacheEndpoints].Version {
		t.Fatal("a new worker did not change the endpoints version")
	}
	if err := h.srv.Publish(ctx, nil); err == nil {
		t.Fatal("Publish(nil) succeeded")
	}
}
