package main

import (
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/wire"
)

// --pool names the worker pool sent to helix-xds; a bad name is refused
// naming the flag and what is wrong.
func TestPoolFlag(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    string
		errPart string
	}{
		{name: "default", want: wire.DefaultPool},
		{name: "given", args: []string{"--pool", "canary-2"}, want: "canary-2"},
		{name: "63 bytes", args: []string{"--pool", strings.Repeat("a", 63)}, want: strings.Repeat("a", 63)},
		{name: "empty", args: []string{"--pool="}, errPart: `--pool "": not a valid pool name: empty`},
		{name: "upper case", args: []string{"--pool", "Canary"}, errPart: `--pool "Canary": not a valid pool name: byte 0 is 'C', want a-z, 0-9 or '-'`},
		{name: "64 bytes", args: []string{"--pool", strings.Repeat("a", 64)}, errPart: "not a valid pool name: 64 bytes, at most 63"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(append([]string{"--model-repository", "models"}, tc.args...))
			if tc.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errPart) {
					t.Fatalf("parseFlags = %v, want an error with %q", err, tc.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.pool != tc.want {
				t.Errorf("pool %q, want %q", o.pool, tc.want)
			}
		})
	}
}
