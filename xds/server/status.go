package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// Status is what the server serves, who is connected, and the last NACK.
type Status struct {
	// Versions by cache (CacheConfig, CacheEndpoints, CacheSecrets).
	Versions map[string]CacheVersion `json:"versions"`
	Nodes    []Node                  `json:"nodes"`
	// NACKs counts configs rejected by any Envoy since start.
	NACKs    uint64 `json:"nacks_total"`
	LastNACK *NACK  `json:"last_nack,omitempty"`
}

// CacheVersion is the snapshot a cache serves.
type CacheVersion struct {
	// Version is a hash of the content, as Envoy sees it in version_info.
	Version string `json:"version"`
	// Generation counts the versions this cache has published since start.
	Generation  uint64    `json:"generation"`
	PublishedAt time.Time `json:"published_at"`
	Resources   int       `json:"resources"`
}

// Node is one connected Envoy (one ADS stream).
type Node struct {
	ID          string    `json:"id"`
	Cluster     string    `json:"cluster"`
	Peer        string    `json:"peer,omitempty"`
	Stream      int64     `json:"stream"`
	Delta       bool      `json:"delta"`
	ConnectedAt time.Time `json:"connected_at"`
	// Acked maps a resource type (listener, route, cluster, endpoint,
	// secret) to the last version this Envoy acknowledged.
	Acked map[string]string `json:"acked"`
}

// NACK is a config rejected by an Envoy.
type NACK struct {
	Node    string `json:"node"`
	Type    string `json:"type"`
	TypeURL string `json:"type_url"`
	// Version rejected ("" when the response could not be matched).
	Version string `json:"version"`
	// Code and Message are Envoy's error_detail.
	Code    string    `json:"code"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// Status returns a copy of the server's state.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Versions: make(map[string]CacheVersion, len(s.versions)), NACKs: s.nacks, Nodes: []Node{}}
	for k, v := range s.versions {
		st.Versions[k] = v
	}
	if s.lastNACK != nil {
		n := *s.lastNACK
		st.LastNACK = &n
	}
	for _, str := range s.streams {
		n := Node{ID: str.nodeID, Cluster: str.nodeCluster, Peer: str.peer, Stream: str.id, Delta: str.delta, ConnectedAt: str.connectedAt, Acked: map[string]string{}}
		for t, ts := range str.types {
			if ts.acked != "" {
				n.Acked[typeLabel(t)] = ts.acked
			}
		}
		st.Nodes = append(st.Nodes, n)
	}
	slices.SortFunc(st.Nodes, func(a, b Node) int { return int(a.Stream - b.Stream) })
	return st
}

// StatusHandler serves Status as JSON (for helixctl status).
func (s *Server) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			_, _ = w.Write([]byte(`{"error":"method not allowed"}` + "\n"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Status())
	})
}
