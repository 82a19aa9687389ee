package freeport

import (
	"fmt"
	"net"
	"testing"
)

func TestPick(t *testing.T) {
	for range 20 {
		port, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if port < Low || port > High {
			t.Fatalf("port %d outside %d-%d", port, Low, High)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("picked port %d is not free: %v", port, err)
		}
		l.Close()
	}
}
