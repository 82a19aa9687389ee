// Package netaddr answers the one question the binaries ask of an address
// before they allow plaintext on it: is it loopback?
package netaddr

import "net"

// LoopbackHost reports whether host ("localhost" or an IP literal) is a
// loopback host. Other names are not: they may resolve anywhere.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Loopback reports whether a host:port address is on a loopback host.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && LoopbackHost(host)
}
