package pgtext

import (
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		max      int
		want     string
	}{
		{"short", "curl/8.0", 64, "curl/8.0"},
		{"cut", "abcdef", 3, "abc"},
		{"cut on a rune boundary", "aé", 2, "a"},
		{"invalid bytes", "a\xff\xfeb", 64, "a\uFFFDb"},
		{"NUL", "a\x00b", 64, "a\uFFFDb"},
		{"zero", "abc", 0, ""},
		{"a two-byte rune is not cut in half", "h\u00e9llo", 2, "h"},
		{"a two-byte rune kept whole", "h\u00e9llo", 3, "h\u00e9"},
		{"only half a rune fits", "\u00e9", 1, ""},
		{"one U+FFFD per run of bad bytes", "\xff\xfe", 10, "\uFFFD"},
		{"a truncated rune", "\xc3", 5, "\uFFFD"},
		{"U+FFFD past the limit", "ab\xff", 3, "ab"},
		{"U+FFFD within the limit", "ab\xff", 5, "ab\uFFFD"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Clip(tt.in, tt.max)
			if got != tt.want || !utf8.ValidString(got) || len(got) > tt.max {
				t.Fatalf("Clip(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
		})
	}
}

func FuzzClip(f *testing.F) {
	f.Add("Mozilla/5.0 \xff", 10)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		got := Clip(s, max)
		if !utf8.ValidString(got) || len(got) > max {
			t.Fatalf("Clip(%q, %d) = %q", s, max, got)
		}
		for _, r := range got {
			if r == 0 {
				t.Fatalf("NUL kept: %q", got)
			}
		}
	})
}
