package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/xds/ir"
)

func TestTrafficPolicies(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       map[string]*ir.Traffic
	}{
		{"none", base, map[string]*ir.Traffic{}},
		{"sticky by default, shadow flat in the file", base + `traffic:
  simple:
    variants:
      - {name: stable, version: 1, weight: 90}
      - {name: canary, version: "2", pool: canary, weight: 10}
    shadow: {name: mirror, version: "3", pool: shadow, percent: 50}
`, map[string]*ir.Traffic{"simple": {
			Sticky:   true,
			Variants: []ir.Variant{{Name: "stable", Version: "1", Weight: 90}, {Name: "canary", Version: "2", Pool: "canary", Weight: 10}},
			Shadow:   &ir.Shadow{Variant: ir.Variant{Name: "mirror", Version: "3", Pool: "shadow"}, Percent: 50},
		}}},
		{"per request, two models", base + `traffic:
  a: {sticky: false, variants: [{name: gpu, pool: gpu, weight: 100}]}
  "résnet-50": {variants: [{name: x, version: "7", weight: 50}, {name: y, version: "8", weight: 50}]}
`, map[string]*ir.Traffic{
			"a":         {Variants: []ir.Variant{{Name: "gpu", Pool: "gpu", Weight: 100}}},
			"résnet-50": {Sticky: true, Variants: []ir.Variant{{Name: "x", Version: "7", Weight: 50}, {Name: "y", Version: "8", Weight: 50}}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "g.yaml")
			if err != nil {
				t.Fatal(err)
			}
			got := c.TrafficPolicies()
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("TrafficPolicies() = %+v, want %+v", got, tc.want)
			}
			// A new map of new policies each call: the builder may keep them.
			for m, p := range got {
				p.Variants[0].Weight = 1
				if c.TrafficPolicies()[m].Variants[0].Weight == 1 {
					t.Error("TrafficPolicies shares state between calls")
				}
			}
		})
	}
}

// TestTrafficErrors: each rule of a policy is reported with the file's
// field path and line.
func TestTrafficErrors(t *testing.T) {
	// base is 5 lines; "traffic:" is line 6, the model line 7.
	policy := func(body string) string { return base + "traffic:\n  simple:\n" + body }
	two := "    variants:\n      - {name: stable, version: \"1\", weight: 90}\n      - {name: canary, version: \"2\", pool: canary, weight: 10}\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"weights short", policy("    variants:\n      - {name: stable, version: \"1\", weight: 90}\n      - {name: canary, version: \"2\", weight: 5}\n"),
			[]string{"g.yaml:8: traffic.simple.variants: weights add up to 95, want 100"}},
		{"weight over 100", policy("    variants:\n      - {name: stable, version: \"1\", weight: 120}\n"),
			[]string{"g.yaml:9: traffic.simple.variants[0].weight: must be 0..100 (percent), got 120", "weights add up to 120"}},
		{"negative weight", policy("    variants:\n      - {name: stable, version: \"1\", weight: -10}\n"),
			[]string{"g.yaml:9: cannot unmarshal !!int `-10` into uint32"}},
		{"duplicate name", policy("    variants:\n      - {name: a, version: \"1\", weight: 50}\n      - {name: a, version: \"2\", weight: 50}\n"),
			[]string{`g.yaml:10: traffic.simple.variants[1].name: duplicate of variants[0] ("a")`}},
		{"bad name", policy("    variants:\n      - name: Stable_1\n        version: \"1\"\n        weight: 100\n"),
			[]string{`g.yaml:9: traffic.simple.variants[0].name: "Stable_1": not a valid variant name: byte 0 is 'S'`}},
		{"bad version", policy("    variants:\n      - {name: a, version: v2, weight: 100}\n"),
			[]string{`g.yaml:9: traffic.simple.variants[0].version: "v2": not a valid model version: want decimal digits`}},
		{"bad pool", policy("    variants:\n      - {name: a, pool: GPU, weight: 100}\n"),
			[]string{`g.yaml:9: traffic.simple.variants[0].pool: "GPU": not a valid pool name`}},
		{"neither version nor pool", policy("    variants:\n      - {name: a, weight: 100}\n"),
			[]string{"g.yaml:9: traffic.simple.variants[0]: needs a version, a pool or both"}},
		{"no variants", policy("    sticky: false\n"), []string{"g.yaml:7: traffic.simple.variants: required"}},
		{"nine variants", policy("    variants:\n" + strings.Repeat("      - {name: a, version: \"1\", weight: 10}\n", 9)),
			[]string{"g.yaml:8: traffic.simple.variants: 9 variants, at most 8"}},
		{"shadow percent zero", policy(two + "    shadow: {name: mirror, version: \"3\", percent: 0}\n"),
			[]string{"g.yaml:11: traffic.simple.shadow.percent: must be in (0, 100], got 0"}},
		{"shadow percent over", policy(two + "    shadow:\n      name: mirror\n      pool: shadow\n      percent: 150\n"),
			[]string{"g.yaml:14: traffic.simple.shadow.percent: must be in (0, 100], got 150"}},
		{"shadow without percent", policy(two + "    shadow: {name: mirror, pool: shadow}\n"),
			[]string{"g.yaml:11: traffic.simple.shadow.percent: must be in (0, 100], got 0"}},
		{"shadow named as a variant", policy(two + "    shadow:\n      name: canary\n      version: \"3\"\n      percent: 5\n"),
			[]string{`g.yaml:12: traffic.simple.shadow.name: "canary" is the name of variants[1]; a shadow needs its own`}},
		{"shadow selects nothing", policy(two + "    shadow: {name: mirror, percent: 5}\n"),
			[]string{"g.yaml:11: traffic.simple.shadow: needs a version, a pool or both"}},
		{"unknown field", policy(two + "    mirror: true\n"), []string{"g.yaml:11: field mirror not found"}},
		{"unknown variant field", policy("    variants:\n      - {name: a, version: \"1\", weight: 100, percent: 3}\n"), []string{"g.yaml:9: field percent not found"}},
		{"bad model name", base + "traffic:\n  'a/b':\n" + two, []string{`g.yaml:7: traffic.a/b: not a valid model name: byte 1 is '/'`}},
		{"two policies, two errors", base + "traffic:\n  a: {variants: [{name: x, version: \"1\", weight: 99}]}\n  b: {variants: [{name: x, weight: 100}]}\n",
			[]string{"g.yaml:7: traffic.a.variants: weights add up to 99", "g.yaml:8: traffic.b.variants[0]: needs a version"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "/etc/helix/g.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestExampleTraffic: the commented example holds the design's policy.
func TestExampleTraffic(t *testing.T) {
	c, err := Load("testdata/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := c.TrafficPolicies()["simple"]
	if p == nil || !p.Sticky || len(p.Variants) != 2 || p.Variants[1] != (ir.Variant{Name: "canary", Version: "2", Pool: "canary", Weight: 10}) ||
		p.Shadow == nil || p.Shadow.Percent != 50 {
		t.Errorf("traffic.simple = %+v", p)
	}
}
