package config

import (
	"slices"
	"strings"
	"testing"
)

func TestWorkerIdentities(t *testing.T) {
	c, err := Parse([]byte(base+`worker_identities:
  spiffe://helixflow.local/worker/pool-a:
    models: [simple, densenet_onnx]
  spiffe://helixflow.local/worker/quarantined:
    models: []
`), "g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := c.WorkerModels()
	if !slices.Equal(m["spiffe://helixflow.local/worker/pool-a"], []string{"simple", "densenet_onnx"}) || len(m) != 2 {
		t.Fatalf("WorkerModels = %v", m)
	}
	for name, tc := range map[string]struct{ yaml, want string }{
		"not a worker identity": {"worker_identities:\n  spiffe://helixflow.local/envoy:\n    models: [simple]\n",
			"g.yaml:7: worker_identities.spiffe://helixflow.local/envoy: invalid identity"},
		"bad model": {"worker_identities:\n  spiffe://helixflow.local/worker/a:\n    models: [\"a b\"]\n",
			`worker_identities.spiffe://helixflow.local/worker/a.models[0]: "a b": not a valid model name`},
	} {
		_, err := Parse([]byte(base+tc.yaml), "g.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}
