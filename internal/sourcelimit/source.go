package sourcelimit

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Sources tells a request's source address: the one home of the rule, so
// that the limits, the throttles, the audit trail and the OAuth server
// agree on who is calling. The zero value trusts no proxy.
type Sources struct {
	// Trusted are the peers whose X-Forwarded-For is believed, as
	// ParsePrefixes returns them (IPv4 unmapped).
	Trusted []netip.Prefix
}

// Source is the request's source address: the peer, or, when the peer is
// a trusted proxy, the rightmost X-Forwarded-For entry that is not one
// (entries to its left were written by the client and prove nothing).
// ok is false when the peer address cannot be parsed.
func (s Sources) Source(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	peer = peer.WithZone("").Unmap()
	if !s.trusted(peer) {
		return peer, true
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := strings.Split(hops[i], ",")
		for j := len(list) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(list[j]))
			if err != nil {
				// A trusted proxy wrote garbage: count the proxy.
				return peer, true
			}
			if a = a.WithZone("").Unmap(); !s.trusted(a) {
				return a, true
			}
		}
	}
	return peer, true
}

func (s Sources) trusted(a netip.Addr) bool {
	for _, p := range s.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// String is Source as text, for the audit trail and the sessions list ("" when
// the peer address cannot be parsed).
func (s Sources) String(r *http.Request) string {
	if a, ok := s.Source(r); ok {
		return a.String()
	}
	return ""
}
