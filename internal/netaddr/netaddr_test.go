package netaddr

import "testing"

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:80": true, "127.9.9.9:1": true, "[::1]:8080": true, "localhost:1": true,
		"0.0.0.0:80": false, "10.0.0.1:80": false, "example.com:80": false, "localhost.evil.com:1": false,
		"127.0.0.1": false, "": false, ":80": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
