package wire

import (
	"strings"
	"testing"
)

func TestCheckPoolAndVariantName(t *testing.T) {
	for _, tc := range []struct {
		name          string
		pool, variant string // wanted error parts; "" accepts
	}{
		{"default", "", ""},
		{"canary-2", "", ""},
		{"0", "", ""},
		{strings.Repeat("a", 32), "", ""},
		{strings.Repeat("a", 33), "", "33 bytes, at most 32"},
		{strings.Repeat("a", 63), "", "63 bytes, at most 32"},
		{strings.Repeat("a", 64), "64 bytes, at most 63", "64 bytes, at most 32"},
		{"", "empty", "empty"},
		{"Canary", "byte 0 is 'C'", "byte 0 is 'C'"},
		{"a_b", "byte 1 is '_'", "byte 1 is '_'"},
		{"a.b", "byte 1 is '.'", "byte 1 is '.'"},
		{"gpu pool", "byte 3 is ' '", "byte 3 is ' '"},
		{"aé", "byte 1 is 'é'", "byte 1 is 'é'"},
	} {
		wantErr(t, "CheckPoolName", tc.name, CheckPoolName(tc.name), ErrPoolName, tc.pool)
		wantErr(t, "CheckVariantName", tc.name, CheckVariantName(tc.name), ErrVariantName, tc.variant)
	}
}
