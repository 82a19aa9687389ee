package ir

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// canaryPolicy is 90/10 between version 1 and version 2 in pool canary,
// with a shadow of version 3.
func canaryPolicy() *Traffic {
	return &Traffic{
		Sticky: true,
		Variants: []Variant{
			{Name: "stable", Version: "1", Weight: 90},
			{Name: "canary", Version: "2", Pool: "canary", Weight: 10},
		},
		Shadow: &Shadow{Variant: Variant{Name: "mirror", Version: "3", Pool: "shadow"}, Percent: 50},
	}
}

func TestValidateTraffic(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Traffic)
		want []string // "field: reason part"; none: valid
	}{
		{"valid", func(*Traffic) {}, nil},
		{"pool only, zero weight kept", func(tr *Traffic) {
			tr.Variants = []Variant{{Name: "a", Pool: "default", Weight: 100}, {Name: "b", Pool: "gpu", Weight: 0}}
			tr.Shadow = nil
		}, nil},
		{"version 007 is fine", func(tr *Traffic) { tr.Variants[0].Version = "007" }, nil},
		{"eight variants", func(tr *Traffic) {
			tr.Variants = nil
			for i := range 8 {
				w := uint32(12)
				if i == 0 {
					w = 16
				}
				tr.Variants = append(tr.Variants, Variant{Name: string(rune('a' + i)), Version: "1", Weight: w})
			}
		}, nil},
		{"no variants", func(tr *Traffic) { tr.Variants = nil }, []string{"variants: required"}},
		{"nine variants", func(tr *Traffic) {
			tr.Variants = nil
			for i := range 9 {
				tr.Variants = append(tr.Variants, Variant{Name: string(rune('a' + i)), Version: "1", Weight: 11 + uint32(i/8)})
			}
		}, []string{"variants: 9 variants, at most 8"}},
		{"weights short", func(tr *Traffic) { tr.Variants[1].Weight = 5 }, []string{"variants: weights add up to 95, want 100"}},
		{"weight over 100", func(tr *Traffic) { tr.Variants[0].Weight = 190; tr.Variants[1].Weight = 0 },
			[]string{"variants[0].weight: must be 0..100", "variants: weights add up to 190"}},
		{"weights overflowing uint32 still counted", func(tr *Traffic) { tr.Variants[0].Weight = math.MaxUint32; tr.Variants[1].Weight = 101 },
			[]string{"weights add up to 4294967396"}},
		{"duplicate name", func(tr *Traffic) { tr.Variants[1].Name = "stable" }, []string{`variants[1].name: duplicate of variants[0] ("stable")`}},
		{"bad name", func(tr *Traffic) { tr.Variants[1].Name = "Canary" }, []string{`variants[1].name: "Canary": not a valid variant name`}},
		{"empty name", func(tr *Traffic) { tr.Variants[1].Name = "" }, []string{`variants[1].name: "": not a valid variant name: empty`}},
		{"long name", func(tr *Traffic) { tr.Variants[1].Name = strings.Repeat("c", 33) }, []string{"variants[1].name", "33 bytes, at most 32"}},
		{"bad version", func(tr *Traffic) { tr.Variants[0].Version = "v1" }, []string{`variants[0].version: "v1": not a valid model version`}},
		{"bad pool", func(tr *Traffic) { tr.Variants[1].Pool = "GPU_pool" }, []string{`variants[1].pool: "GPU_pool": not a valid pool name`}},
		{"neither version nor pool", func(tr *Traffic) { tr.Variants[0].Version = "" }, []string{"variants[0]: needs a version, a pool or both"}},
		{"shadow percent zero", func(tr *Traffic) { tr.Shadow.Percent = 0 }, []string{"shadow.percent: must be in (0, 100], got 0"}},
		{"shadow percent over", func(tr *Traffic) { tr.Shadow.Percent = 100.5 }, []string{"shadow.percent: must be in (0, 100], got 100.5"}},
		{"shadow percent NaN", func(tr *Traffic) { tr.Shadow.Percent = math.NaN() }, []string{"shadow.percent: must be in (0, 100], got NaN"}},
		{"shadow named as a variant", func(tr *Traffic) { tr.Shadow.Variant.Name = "canary" }, []string{`shadow.variant.name: "canary" is the name of variants[1]`}},
		{"shadow selects nothing", func(tr *Traffic) { tr.Shadow.Variant = Variant{Name: "mirror"} }, []string{"shadow.variant: needs a version, a pool or both"}},
		{"shadow bad version", func(tr *Traffic) { tr.Shadow.Variant.Version = "x" }, []string{`shadow.variant.version: "x"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := canaryPolicy()
			tc.edit(tr)
			err := ValidateTraffic(tr)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestVariantMatches(t *testing.T) {
	e := Endpoint{Address: "127.0.0.1", Port: 1, Versions: []string{"1", "2"}, Pool: "canary"}
	noPool := Endpoint{Address: "127.0.0.1", Port: 2, Versions: []string{"1"}}
	tests := []struct {
		v    Variant
		e    Endpoint
		want bool
	}{
		{Variant{Version: "2"}, e, true},
		{Variant{Version: "002"}, e, true},
		{Variant{Version: "3"}, e, false},
		{Variant{Pool: "canary"}, e, true},
		{Variant{Pool: "default"}, e, false},
		{Variant{Version: "1", Pool: "canary"}, e, true},
		{Variant{Version: "3", Pool: "canary"}, e, false},
		{Variant{Pool: "default"}, noPool, true}, // no pool is the default pool
		{Variant{Version: "1", Pool: "default"}, noPool, true},
		{Variant{Version: "10"}, noPool, false},
		{Variant{Version: "0"}, Endpoint{Versions: []string{"00"}}, true},
	}
	for _, tc := range tests {
		if got := tc.v.Matches(tc.e); got != tc.want {
			t.Errorf("%+v.Matches(%+v) = %v, want %v", tc.v, tc.e, got, tc.want)
		}
	}
}

func TestTrafficInactive(t *testing.T) {
	stable := Endpoint{Address: "127.0.0.1", Port: 1, Ready: true, Versions: []string{"1"}, Pool: "default"}
	canary := Endpoint{Address: "127.0.0.2", Port: 1, Ready: true, Versions: []string{"2"}, Pool: "canary"}
	tests := []struct {
		name       string
		pool       Pool
		reason     string
		detailPart string
	}{
		{"both variants served", Pool{Endpoints: []Endpoint{stable, canary}}, "", ""},
		{"canary missing", Pool{Endpoints: []Endpoint{stable}}, InactiveNoEndpoints, `variant "canary" (version 2 in pool canary) matches no ready endpoint`},
		{"canary not ready", Pool{Endpoints: []Endpoint{stable, {Address: "127.0.0.2", Port: 1, Versions: []string{"2"}, Pool: "canary"}}}, InactiveNoEndpoints, `"canary"`},
		{"canary in the wrong pool", Pool{Endpoints: []Endpoint{stable, {Address: "127.0.0.2", Port: 1, Ready: true, Versions: []string{"2"}}}}, InactiveNoEndpoints, `"canary"`},
		{"sequence model", Pool{Sequence: true, Endpoints: []Endpoint{stable, canary}}, InactiveSequence, "traffic policy on sequence model"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pool
			p.Model = "simple"
			p.Traffic = canaryPolicy()
			reason, detail := p.TrafficInactive()
			if reason != tc.reason || !strings.Contains(detail, tc.detailPart) {
				t.Errorf("TrafficInactive() = %q, %q; want %q, %q", reason, detail, tc.reason, tc.detailPart)
			}
		})
	}
	t.Run("zero weight variant may match nothing", func(t *testing.T) {
		p := Pool{Model: "simple", Endpoints: []Endpoint{stable}, Traffic: canaryPolicy()}
		p.Traffic.Variants[0].Weight, p.Traffic.Variants[1].Weight = 100, 0
		if reason, detail := p.TrafficInactive(); reason != "" {
			t.Errorf("TrafficInactive() = %q, %q; want active", reason, detail)
		}
	})
}

// TestValidatePoolTraffic: Validate checks each pool's policy, names the
// pool's field, and refuses one that TrafficInactive would leave out.
func TestValidatePoolTraffic(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Gateway)
		want string
	}{
		{"applied", func(g *Gateway) {
			g.Pools[0].Endpoints = append(g.Pools[0].Endpoints, Endpoint{Address: "127.0.0.2", Port: 8001, Ready: true, Versions: []string{"2"}, Pool: "canary"})
		}, ""},
		{"bad policy", func(g *Gateway) { g.Pools[0].Traffic.Variants[0].Weight = 1 }, "pools[0].traffic.variants: weights add up to 11, want 100"},
		{"canary has no endpoint", func(g *Gateway) {}, `pools[0].traffic: variant "canary" (version 2 in pool canary) matches no ready endpoint`},
		{"sequence", func(g *Gateway) { g.Pools[0].Sequence = true }, "pools[0].traffic: traffic policy on sequence model"},
		{"default pool", func(g *Gateway) { g.DefaultPool.Traffic = canaryPolicy() }, "default_pool.traffic: must be nil for the default pool"},
		{"bad endpoint pool", func(g *Gateway) { g.Pools[0].Traffic = nil; g.Pools[0].Endpoints[0].Pool = "Blue" }, `pools[0].endpoints[0].pool: "Blue": not a valid pool name`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := validGateway()
			g.Pools[0].Traffic = canaryPolicy()
			tc.edit(g)
			err := g.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
