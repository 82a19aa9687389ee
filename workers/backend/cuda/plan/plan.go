// Package plan places a model's activations in one memory arena: every
// buffer gets an offset such that buffers alive at the same step never
// overlap, so that one allocation made at load serves every request of a
// given batch size.
package plan

import (
	"fmt"
	"slices"
)

// Align is the offset alignment of every buffer: what cuBLAS and vector
// loads want (256 bytes, as cudaMalloc gives).
const Align = 256

// Buffer is one allocation to place.
type Buffer struct {
	// Size in bytes.
	Size int64
	// First and Last are the steps (inclusive) during which the buffer
	// must hold its contents: from the step that writes it to the last
	// step that reads it.
	First, Last int
}

func (b Buffer) overlapsInTime(o Buffer) bool { return b.First <= o.Last && o.First <= b.Last }

// Place assigns offsets (multiples of Align) to bufs and returns them with
// the arena size. It places the largest buffers first, each at the lowest
// offset where it fits beside the buffers already placed that are alive at
// the same time (greedy by size, as TensorFlow Lite's arena planner does);
// the result depends only on bufs.
func Place(bufs []Buffer) (offsets []int64, total int64, err error) {
	for i, b := range bufs {
		if b.Size < 0 || b.First > b.Last {
			return nil, 0, fmt.Errorf("buffer %d: size %d, steps %d..%d", i, b.Size, b.First, b.Last)
		}
	}
	order := make([]int, len(bufs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case bufs[a].Size != bufs[b].Size:
			return compare(bufs[b].Size, bufs[a].Size)
		case bufs[a].First != bufs[b].First:
			return bufs[a].First - bufs[b].First
		}
		return a - b
	})
	offsets = make([]int64, len(bufs))
	var placed []int // indices of placed buffers
	type span struct{ start, end int64 }
	for _, i := range order {
		b := bufs[i]
		size := roundUp(b.Size)
		var busy []span
		for _, j := range placed {
			if bufs[j].overlapsInTime(b) && bufs[j].Size > 0 {
				busy = append(busy, span{offsets[j], offsets[j] + roundUp(bufs[j].Size)})
			}
		}
		slices.SortFunc(busy, func(x, y span) int { return compare(x.start, y.start) })
		off := int64(0)
		for _, s := range busy {
			if off+size <= s.start {
				break
			}
			off = max(off, s.end)
		}
		offsets[i] = off
		total = max(total, off+size)
		placed = append(placed, i)
	}
	return offsets, total, nil
}

func roundUp(n int64) int64 { return (n + Align - 1) / Align * Align }

func compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Check reports two buffers alive at the same step whose bytes overlap, or
// one that does not fit in total bytes.
func Check(bufs []Buffer, offsets []int64, total int64) error {
	for i, a := range bufs {
		if offsets[i]%Align != 0 || offsets[i] < 0 || offsets[i]+a.Size > total {
			return fmt.Errorf("buffer %d (%d bytes) at offset %d does not fit an arena of %d bytes aligned to %d", i, a.Size, offsets[i], total, Align)
		}
		for j := i + 1; j < len(bufs); j++ {
			b := bufs[j]
			if a.Size == 0 || b.Size == 0 || !a.overlapsInTime(b) {
				continue
			}
			if offsets[i] < offsets[j]+b.Size && offsets[j] < offsets[i]+a.Size {
				return fmt.Errorf("buffers %d (steps %d..%d, bytes %d..%d) and %d (steps %d..%d, bytes %d..%d) overlap",
					i, a.First, a.Last, offsets[i], offsets[i]+a.Size, j, b.First, b.Last, offsets[j], offsets[j]+b.Size)
			}
		}
	}
	return nil
}
