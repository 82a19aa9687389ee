package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/xds/ir"
)

var update = flag.Bool("update", false, "rewrite testdata/*.out.yaml from the current output")

// loadIR reads an IR written as YAML and applies the defaults.
func loadIR(t testing.TB, path string) *ir.Gateway {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var g ir.Gateway
	if err := dec.Decode(&g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	g.ApplyDefaults()
	return &g
}

// resourcesYAML renders resources as YAML: protojson (Any unpacked) for
// each, then YAML with sorted keys, so a diff reads like Envoy config.
func resourcesYAML(t testing.TB, r *Resources) []byte {
	t.Helper()
	conv := func(rs []types.Resource) []any {
		out := make([]any, 0, len(rs))
		for _, m := range rs {
			js, err := protojson.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			out = append(out, numbers(v))
		}
		return out
	}
	doc := map[string]any{
		"listeners": conv(r.Listeners),
		"routes":    conv(r.Routes),
		"clusters":  conv(r.Clusters),
		"endpoints": conv(r.Endpoints),
		"secrets":   conv(r.Secrets),
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// numbers turns JSON numbers into ints where they are integers, so YAML
// shows 16777216 rather than 1.6777216e+07.
func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			r, err := Translate(loadIR(t, in))
			if err != nil {
				t.Fatal(err)
			}
			got := resourcesYAML(t, r)
			out := strings.TrimSuffix(in, ".in.yaml") + ".out.yaml"
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run go test ./xds/translate -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test ./xds/translate -update and review the diff):\n%s", out, lineDiff(want, got))
			}
		})
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return "line " + strconv.Itoa(i+1) + ":\n- " + a + "\n+ " + b
		}
	}
	return "(equal)"
}

func TestDeterministic(t *testing.T) {
	for _, in := range []string{"testdata/three-models-shared-workers.in.yaml", "testdata/tls-on.in.yaml", "testdata/plans.in.yaml"} {
		g := loadIR(t, in)
		a, err := Translate(g)
		if err != nil {
			t.Fatal(err)
		}
		// Reverse every list the model holds: the output must not care.
		h := loadIR(t, in)
		reversePools(h)
		b, err := Translate(h)
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range []struct {
			name string
			a, b []types.Resource
		}{{"listeners", a.Listeners, b.Listeners}, {"routes", a.Routes, b.Routes}, {"clusters", a.Clusters, b.Clusters}, {"endpoints", a.Endpoints, b.Endpoints}, {"secrets", a.Secrets, b.Secrets}} {
			if len(kind.a) != len(kind.b) {
				t.Fatalf("%s: %s: %d vs %d resources", in, kind.name, len(kind.a), len(kind.b))
			}
			for i := range kind.a {
				if !proto.Equal(kind.a[i], kind.b[i]) {
					t.Errorf("%s: %s[%d] differs between two translations", in, kind.name, i)
				}
				// Byte-equal too: the ADS server may hash marshaled resources.
				x, _ := proto.MarshalOptions{Deterministic: true}.Marshal(kind.a[i])
				y, _ := proto.MarshalOptions{Deterministic: true}.Marshal(kind.b[i])
				if !bytes.Equal(x, y) {
					t.Errorf("%s: %s[%d] marshals differently", in, kind.name, i)
				}
			}
		}
	}
}

// helix-authz enforces the plans inside its Check: a gateway with plans
// gives Envoy exactly what one without gives it (no ratelimit filter,
// cluster or descriptors; no second side call per request).
func TestPlansAddNothingToEnvoy(t *testing.T) {
	in := "testdata/plans.in.yaml"
	g := loadIR(t, in)
	if g.RateLimit == nil || len(g.RateLimit.Plans) == 0 {
		t.Fatalf("%s has no plans", in)
	}
	without := loadIR(t, in)
	without.RateLimit = nil
	if got, want := resourcesOf(t, g), resourcesOf(t, without); !bytes.Equal(got, want) {
		t.Errorf("plans change Envoy's resources:\n%s", lineDiff(want, got))
	}
}

func reversePools(g *ir.Gateway) {
	rev := func(eps []ir.Endpoint) {
		for i, j := 0, len(eps)-1; i < j; i, j = i+1, j-1 {
			eps[i], eps[j] = eps[j], eps[i]
		}
	}
	for i, j := 0, len(g.Pools)-1; i < j; i, j = i+1, j-1 {
		g.Pools[i], g.Pools[j] = g.Pools[j], g.Pools[i]
	}
	for i := range g.Pools {
		rev(g.Pools[i].Endpoints)
	}
	rev(g.DefaultPool.Endpoints)
}

func TestTranslateDoesNotModifyInput(t *testing.T) {
	g := loadIR(t, "testdata/three-models-shared-workers.in.yaml")
	before := resourcesOf(t, g)
	first := g.Pools[0].Model
	if _, err := Translate(g); err != nil {
		t.Fatal(err)
	}
	if g.Pools[0].Model != first {
		t.Fatalf("Translate reordered the caller's pools: %q first, was %q", g.Pools[0].Model, first)
	}
	if after := resourcesOf(t, g); !bytes.Equal(before, after) {
		t.Fatal("second translation of the same model differs")
	}
}

func resourcesOf(t *testing.T, g *ir.Gateway) []byte {
	r, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	return resourcesYAML(t, r)
}

func TestTranslateRejectsInvalidModel(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*ir.Gateway)
		field string
	}{
		{"duplicate pool", func(g *ir.Gateway) { g.Pools = append(g.Pools, g.Pools[0]) }, "pools[1].model"},
		{"bad model name", func(g *ir.Gateway) { g.Pools[0].Model = "a/b" }, "pools[0].model"},
		{"hostname endpoint", func(g *ir.Gateway) { g.Pools[0].Endpoints[0].Address = "worker-1" }, "pools[0].endpoints[0].address"},
		{"plaintext to remote worker", func(g *ir.Gateway) { g.DefaultPool.Endpoints[0].Address = "10.0.0.1" }, "default_pool.endpoints[0].address"},
		{"no listener tls on a public address", func(g *ir.Gateway) { g.Listener.Address = "0.0.0.0" }, "listener.tls"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := loadIR(t, "testdata/one-model-one-worker.in.yaml")
			tc.edit(g)
			_, err := Translate(g)
			if !errors.Is(err, ir.ErrInvalid) {
				t.Fatalf("err = %v, want ir.ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("err = %v, want it to name %s", err, tc.field)
			}
		})
	}
}

func TestTranslateEndpointsMatchesTranslate(t *testing.T) {
	g := loadIR(t, "testdata/three-models-shared-workers.in.yaml")
	r, err := Translate(g)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := TranslateEndpoints(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != len(r.Endpoints) {
		t.Fatalf("%d vs %d assignments", len(eps), len(r.Endpoints))
	}
	for i := range eps {
		if !proto.Equal(eps[i], r.Endpoints[i]) {
			t.Errorf("assignment %d differs", i)
		}
	}
	// Every EDS cluster has its assignment, in the same order; a
	// sequence twin shares its pool's (EDS service name).
	var eds []string
	for _, c := range r.Clusters {
		c := c.(*clusterv3.Cluster)
		if c.GetEdsClusterConfig() == nil {
			continue
		}
		if n := c.GetEdsClusterConfig().GetServiceName(); n != c.Name {
			if !slices.Contains(eds, n) || c.LbPolicy != clusterv3.Cluster_MAGLEV {
				t.Fatalf("cluster %q takes %q's assignment, which comes after it or is not its pool's twin", c.Name, n)
			}
			continue
		}
		eds = append(eds, c.Name)
	}
	for i, e := range r.Endpoints {
		if name := e.(*endpointv3.ClusterLoadAssignment).ClusterName; i >= len(eds) || name != eds[i] {
			t.Fatalf("assignment %d is for %q, clusters are %v", i, name, eds)
		}
	}
	if len(eds) != len(r.Endpoints) {
		t.Fatalf("%d EDS clusters, %d assignments", len(eds), len(r.Endpoints))
	}
}

// The filter table is the only place the order is decided; this pins it.
func TestFilterOrder(t *testing.T) {
	var got []string
	for _, f := range httpFilters {
		got = append(got, f.name)
	}
	want := []string{filterHeaderMutation, filterCORS, filterSourceLimit, filterExtAuthz, filterGRPCStats, filterRouter}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("filter order = %v, want %v", got, want)
	}
}

func TestResourceErrorNamesResource(t *testing.T) {
	err := check("cluster", "helix-x", &clusterv3.Cluster{Name: ""})
	if !errors.Is(err, ErrInvalidResource) || !strings.Contains(err.Error(), `cluster "helix-x"`) {
		t.Fatalf("err = %v", err)
	}
}
