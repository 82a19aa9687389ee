package plan

import (
	"math/rand/v2"
	"testing"
)

func TestPlace(t *testing.T) {
	tests := []struct {
		name string
		bufs []Buffer
		// wantTotal is the arena size the planner must reach.
		wantTotal int64
	}{
		{"empty", nil, 0},
		{"one", []Buffer{{Size: 100, First: 0, Last: 3}}, 256},
		{
			// A chain where each buffer is read by the next step only: two
			// slots suffice however long the chain.
			"chain reuses two slots",
			[]Buffer{{1024, 0, 1}, {1024, 1, 2}, {1024, 2, 3}, {1024, 3, 4}, {1024, 4, 5}},
			2048,
		},
		{
			"all alive at once",
			[]Buffer{{512, 0, 2}, {256, 1, 2}, {768, 2, 2}},
			512 + 256 + 768,
		},
		{
			// The small buffer fits in the gap the two large ones leave.
			"gap reuse",
			[]Buffer{{1024, 0, 1}, {1024, 2, 3}, {512, 1, 2}, {512, 0, 0}},
			1024 + 512,
		},
		{"zero size", []Buffer{{0, 0, 5}, {256, 0, 5}}, 256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offsets, total, err := Place(tt.bufs)
			if err != nil {
				t.Fatal(err)
			}
			if err := Check(tt.bufs, offsets, total); err != nil {
				t.Fatal(err)
			}
			if total != tt.wantTotal {
				t.Errorf("arena of %d bytes, want %d (offsets %v)", total, tt.wantTotal, offsets)
			}
		})
	}
}

// TestPlaceRandom places random lifetimes and checks that no two live
// buffers overlap, that memory is reused, and that the result is
// deterministic.
func TestPlaceRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := 1 + r.IntN(60)
		bufs := make([]Buffer, n)
		var sum int64
		for i := range bufs {
			first := r.IntN(40)
			bufs[i] = Buffer{Size: int64(r.IntN(1 << 16)), First: first, Last: first + r.IntN(6)}
			sum += roundUp(bufs[i].Size)
		}
		offsets, total, err := Place(bufs)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(bufs, offsets, total); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if total > sum {
			t.Fatalf("round %d: arena %d is larger than all buffers together (%d)", round, total, sum)
		}
		// The arena is at least the largest set of bytes alive at one step.
		var peak int64
		for step := range 50 {
			var live int64
			for _, b := range bufs {
				if b.First <= step && step <= b.Last {
					live += b.Size
				}
			}
			peak = max(peak, live)
		}
		if total < peak {
			t.Fatalf("round %d: arena %d below the live peak %d", round, total, peak)
		}
		again, total2, _ := Place(bufs)
		for i := range again {
			if again[i] != offsets[i] || total2 != total {
				t.Fatalf("round %d: placement differs between runs", round)
			}
		}
	}
}

func TestPlaceRejects(t *testing.T) {
	if _, _, err := Place([]Buffer{{Size: 8, First: 3, Last: 2}}); err == nil {
		t.Error("a buffer that dies before it is written was placed")
	}
	if _, _, err := Place([]Buffer{{Size: -1}}); err == nil {
		t.Error("a negative size was placed")
	}
}

func TestCheckFindsOverlap(t *testing.T) {
	bufs := []Buffer{{512, 0, 2}, {512, 1, 3}}
	if err := Check(bufs, []int64{0, 256}, 1024); err == nil {
		t.Error("overlapping live buffers passed the check")
	}
	if err := Check(bufs, []int64{0, 512}, 1024); err != nil {
		t.Errorf("disjoint buffers failed the check: %v", err)
	}
	if err := Check([]Buffer{{512, 0, 0}, {512, 1, 1}}, []int64{0, 0}, 512); err != nil {
		t.Errorf("buffers alive at different steps may share bytes: %v", err)
	}
}
