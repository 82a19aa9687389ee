package registration_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/registration"
	"github.com/helixflow/helixflow/xds/registry"
	"github.com/helixflow/helixflow/xds/registry/registrytest"
)

// TestRegistersPool: the worker's pool reaches helix-xds's registry
// (RegisterRequest.pool); none is wire.DefaultPool.
func TestRegistersPool(t *testing.T) {
	for _, tc := range []struct{ pool, want string }{
		{"", wire.DefaultPool},
		{"canary", "canary"},
		{strings.Repeat("p", wire.MaxPoolNameBytes), strings.Repeat("p", wire.MaxPoolNameBytes)},
	} {
		t.Run(tc.want, func(t *testing.T) {
			srv := startServer(t, registrytest.Options{})
			w := &worker{}
			w.set(true, registration.Model{Name: "simple", Versions: []string{"1"}, Ready: true})
			cfg := config(srv, w)
			cfg.WorkerID, cfg.Pool = "w1", tc.pool
			run(t, cfg)
			waitFor(t, srv.Registry, "registration in pool "+tc.want, 5*time.Second, func(ws []registry.Worker) bool {
				return len(ws) == 1 && ws[0].Pool == tc.want
			})
		})
	}
}

// TestPoolValidation: a pool name wire.CheckPoolName refuses is a config
// error naming the pool and the rule.
func TestPoolValidation(t *testing.T) {
	w := &worker{}
	for _, tc := range []struct{ pool, errPart string }{
		{"Canary", `Pool "Canary": not a valid pool name: byte 0 is 'C'`},
		{"can_ary", `Pool "can_ary": not a valid pool name: byte 3 is '_'`},
		{strings.Repeat("p", 64), "not a valid pool name: 64 bytes, at most 63"},
	} {
		t.Run(tc.pool, func(t *testing.T) {
			cfg := registration.Config{XDSAddress: "127.0.0.1:1", Insecure: true, Address: "10.0.0.1", GRPCPort: 8001,
				Models: w.Models, Ready: w.Ready, Logger: quiet, Pool: tc.pool}
			err := registration.Run(t.Context(), cfg)
			if !errors.Is(err, registration.ErrConfig) || !errors.Is(err, wire.ErrPoolName) || !strings.Contains(err.Error(), tc.errPart) {
				t.Fatalf("Run = %v, want ErrConfig with %q", err, tc.errPart)
			}
		})
	}
}
