package registry_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/xds/ir"
	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/registry/registrytest"
	"github.com/helixflow/helixflow/xds/translate"
	"github.com/helixflow/helixflow/xds/translate/translatetest"
)

// One worker announcing a model the gateway cannot route ("my model") used
// to be accepted here and then fail every rebuild, so that no config
// change or other worker reached Envoy until its lease ended. Now the
// registry refuses it and the good worker's model is translated.
func TestABadWorkerDoesNotFreezeRebuilds(t *testing.T) {
	srv := registrytest.Start(t, registrytest.Options{Config: registry.Config{
		TTL: time.Minute, Identify: registry.WorkerIdentity, Logger: slog.New(slog.DiscardHandler),
	}})
	c := dial(t, srv.Addr, srv.PKI.Client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	register := func(id, addr, model string) error {
		_, err := c.Register(ctx, &registryv1.RegisterRequest{
			WorkerId: id, Address: addr, GrpcPort: 8001, HttpPort: 8000, Ready: true,
			Models: []*registryv1.Model{{Name: model, Versions: []string{"1"}, Ready: true}},
		})
		return err
	}
	err := register("bad", "127.0.0.2", "my model")
	if s, _ := status.FromError(err); s.Code() != codes.InvalidArgument ||
		!strings.Contains(s.Message(), `"my model": not a valid model name: byte 2 is ' ', white space`) {
		t.Fatalf("registering %q: %v, want InvalidArgument naming the model and why", "my model", err)
	}
	if err := register("good", "127.0.0.1", "simple"); err != nil {
		t.Fatalf("registering the good worker: %v", err)
	}

	res, err := translate.Translate(gatewayOf(srv.Registry.Snapshot()))
	if err != nil {
		t.Fatalf("rebuild with the registry's workers: %v", err)
	}
	var names []string
	for _, r := range res.Clusters {
		names = append(names, r.(*clusterv3.Cluster).GetName())
	}
	if !slices.Contains(names, translate.GRPCCluster("simple")) || slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, "my model") }) {
		t.Fatalf("clusters %q: want the good worker's model only", names)
	}

	// What the registry keeps out: with the bad model in, the rebuild fails.
	g := gatewayOf(srv.Registry.Snapshot())
	g.Pools = append(g.Pools, ir.Pool{Model: "my model", Endpoints: g.Pools[0].Endpoints})
	if _, err := translate.Translate(g); err == nil || !strings.Contains(err.Error(), "pools[0].model") {
		t.Fatalf("a gateway with %q: %v, want the model refused", "my model", err)
	}
}

// gatewayOf is the smallest gateway with one pool per model the workers
// serve.
func gatewayOf(workers []registry.Worker) *ir.Gateway {
	g := translatetest.Gateway(0, 0, 0)
	for _, w := range workers {
		ep := ir.Endpoint{Address: w.Address, Port: w.GRPCPort, HTTPPort: w.HTTPPort, Ready: w.Ready, Worker: w.ID}
		g.DefaultPool.Endpoints = append(g.DefaultPool.Endpoints, ep)
		for _, m := range w.Models {
			ep.Versions = m.Versions
			g.Pools = append(g.Pools, ir.Pool{Model: m.Name, Endpoints: []ir.Endpoint{ep}})
		}
	}
	return g
}
