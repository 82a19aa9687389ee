// Package freeport picks loopback ports for the processes tests start.
//
// A port found by binding port 0 comes from the kernel's ephemeral range,
// the same range outgoing connections take their source ports from: in the
// moment between releasing it and the process binding it, any connection on
// the machine may take it ("address already in use"). Ports picked here
// come from below that range, where only another picker can collide.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
)

// Range is where ports are picked: below Linux's default ephemeral range
// (32768-60999) and above the well-known and commonly used ports.
const (
	Low  = 20000
	High = 32767
)

// Pick returns a port in [Low, High] that was free on 127.0.0.1 a moment
// ago.
func Pick() (int, error) {
	for range 200 {
		port := Low + rand.IntN(High-Low+1)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("freeport: %w", err)
		}
		return port, nil
	}
	return 0, fmt.Errorf("freeport: no free port in %d-%d after 200 tries", Low, High)
}
