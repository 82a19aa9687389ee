package wire

import (
	"hash/fnv"
	"strconv"
	"testing"
)

// fnvAssignment is AssignmentValue's definition, with hash/fnv.
func fnvAssignment(client, model string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(client))
	h.Write([]byte{0})
	h.Write([]byte(model))
	return h.Sum64()
}

func TestAssignmentValue(t *testing.T) {
	for _, tc := range []struct{ client, model string }{
		{"", ""},
		{"client-a", "simple"},
		{"client-b", "simple"},
		{"client-a", "resnet"},
		{"ab", "c"}, // the zero byte keeps ("ab","c") apart from ("a","bc")
		{"a", "bc"},
		{"\x00\xff", "é"},
	} {
		want := fnvAssignment(tc.client, tc.model)
		if got := AssignmentValue(tc.client, tc.model); got != want {
			t.Errorf("AssignmentValue(%q, %q) = %d, want FNV-1a %d", tc.client, tc.model, got, want)
		}
		if got := AssignmentHeaderValue(tc.client, tc.model); got != strconv.FormatUint(want, 10) {
			t.Errorf("AssignmentHeaderValue(%q, %q) = %q, want %d", tc.client, tc.model, got, want)
		}
	}
	if AssignmentValue("ab", "c") == AssignmentValue("a", "bc") {
		t.Error(`("ab","c") and ("a","bc") share an assignment`)
	}
}

func FuzzAssignmentValue(f *testing.F) {
	f.Add("client-a", "simple")
	f.Fuzz(func(t *testing.T, client, model string) {
		if got, want := AssignmentValue(client, model), fnvAssignment(client, model); got != want {
			t.Fatalf("AssignmentValue(%q, %q) = %d, want %d", client, model, got, want)
		}
	})
}

func TestAssignmentValueAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { AssignmentValue("client-a", "simple") }); n != 0 {
		t.Errorf("AssignmentValue allocates %v times, want 0", n)
	}
}
