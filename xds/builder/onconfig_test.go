package builder

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/helixflow/helixflow/xds/config"
)

// OnConfig sees the first config and every good reload: helix-xds hands
// the registry its worker_identities through it.
func TestOnConfig(t *testing.T) {
	path := writeConfig(t, gatewayYAML)
	got := make(chan map[string][]string, 10)
	b, err := New(t.Context(), Config{ConfigPath: path, Workers: &workers{changed: make(chan struct{})}, Publisher: &publisher{got: make(chan []string, 100)},
		OnConfig: func(c *config.Config) { got <- c.WorkerModels() }})
	if err != nil {
		t.Fatal(err)
	}
	if m := <-got; len(m) != 0 {
		t.Fatalf("first config: %v", m)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = b.Run(ctx) }()
	const id = "spiffe://helixflow.local/worker/pool-a"
	later := time.Now().Add(time.Minute)
	if err := os.WriteFile(path, []byte(gatewayYAML+"worker_identities: {'"+id+"': {models: [simple]}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-got:
			if len(m[id]) == 1 && m[id][0] == "simple" {
				return
			}
		case <-deadline:
			t.Fatal("the reloaded config's worker_identities never reached OnConfig")
		}
	}
}
