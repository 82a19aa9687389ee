// Package pgtext makes a string storable in a Postgres text column: the
// one rule for text that comes from callers (user agents, names, audit
// fields), which Postgres refuses when it is not valid UTF-8 or holds NUL.
package pgtext

import (
	"strings"
	"unicode/utf8"
)

// Clip returns s as valid UTF-8 (each run of bad bytes, and each NUL,
// becomes U+FFFD) cut to at most max bytes on a rune boundary.
func Clip(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}
