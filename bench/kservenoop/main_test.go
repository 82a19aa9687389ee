package main

import (
	"strings"
	"testing"
)

func TestRefusedFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", "simple", "--address", "0.0.0.0:0"}, "loopback host only"},
		{[]string{"--model", "simple", "--address", "10.0.0.1:8101"}, "loopback host only"},
		{[]string{"--address", "127.0.0.1:0"}, "--model: name at least one model"},
		{[]string{"--model", " , ", "--address", "127.0.0.1:0"}, "--model: name at least one model"},
		{[]string{"--model", "nope", "--model-repository", t.TempDir(), "--address", "127.0.0.1:0"}, "model 'nope'"},
	} {
		err := runMain(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("runMain(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}
