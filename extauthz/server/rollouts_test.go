package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// TestRolloutsWiring: the admin API's rollouts run on the server's
// database and check a new rollout against helix-xds's real Catalog
// service (mTLS), dialled after the admin API is made; without
// --xds-address a start is 501 and the rest works.
func TestRolloutsWiring(t *testing.T) {
	xds := startCatalog(t)
	r := startReplica(t, pgtest.NewDatabase(t, pgtest.StartShared(t)), func(c *Config) { c.Catalog = xds })
	var errBody struct{ Error string }
	start := map[string]any{"model": "simple", "to_version": "2", "steps": []int{50, 100}, "interval": "10s", "slo": map[string]any{"p99_ms": 100}}
	if code := r.adminCall(t, "POST", "/admin/v1/rollouts", start, &errBody); code != http.StatusBadRequest ||
		!strings.Contains(errBody.Error, `no ready worker serves version 2 of model "simple" (served: 1)`) {
		t.Fatalf("start of an unserved version: %d %+v", code, errBody)
	}
	start["model"] = "nobody"
	if code := r.adminCall(t, "POST", "/admin/v1/rollouts", start, &errBody); code != http.StatusBadRequest ||
		!strings.Contains(errBody.Error, `model: "nobody" is not served`) {
		t.Fatalf("start of an unserved model: %d %+v", code, errBody)
	}
	delete(start, "to_version")
	start["model"], start["to_pool"] = "simple", "canary"
	var ro admin.RolloutView
	if code := r.adminCall(t, "POST", "/admin/v1/rollouts", start, &ro); code != http.StatusCreated ||
		ro.State != "running" || ro.FromPool != "default" || ro.CreatedBy != "admin-token" {
		t.Fatalf("start: %d %+v", code, ro)
	}
	var list []admin.RolloutView
	if code := r.adminCall(t, "GET", "/admin/v1/rollouts?model=simple", nil, &list); code != http.StatusOK || len(list) != 1 || list[0].ID != ro.ID {
		t.Fatalf("list: %d %+v", code, list)
	}

	off := startReplica(t, pgtest.NewDatabase(t, pgtest.StartShared(t)))
	if code := off.adminCall(t, "POST", "/admin/v1/rollouts", start, &errBody); code != http.StatusNotImplemented ||
		!strings.Contains(errBody.Error, "--xds-address") {
		t.Fatalf("start without --xds-address: %d %+v", code, errBody)
	}
	if code := off.adminCall(t, "GET", "/admin/v1/rollouts", nil, &list); code != http.StatusOK || len(list) != 0 {
		t.Fatalf("list without --xds-address: %d %+v", code, list)
	}
}
