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
	// Traffic is the traffic policy of each model that has one (the
	// gateway config's or a rollout's), by model, with whether it is
	// applied now (SetTrafficStatus; empty without policies).
	Traffic []TrafficPolicy `json:"traffic"`
}

// Where a model's traffic policy comes from (TrafficPolicy.Source).
const (
	TrafficSourceConfig  = "config"  // the gateway config's traffic.<model>
	TrafficSourceRollout = "rollout" // a rollout's weights, which replace it
)

// TrafficPolicy is a model's traffic policy as helix-xds applies it.
type TrafficPolicy struct {
	Model  string `json:"model"`
	Source string `json:"source"` // TrafficSourceConfig or TrafficSourceRollout
	// Active: Envoy's routes split the model's requests by this policy.
	// Otherwise the model keeps its plain routes, for InactiveReason (the
	// reason label of helix_xds_traffic_policy_inactive), explained in
	// Detail.
	Active         bool             `json:"active"`
	InactiveReason string           `json:"inactive_reason,omitempty"`
	Detail         string           `json:"detail,omitempty"`
	Sticky         bool             `json:"sticky"`
	Variants       []TrafficVariant `json:"variants"`
	Shadow         *TrafficShadow   `json:"shadow,omitempty"`
}

// TrafficVariant is one variant: the model's endpoints serving Version
// ("" any) in Pool ("" any), and its share in percent.
type TrafficVariant struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Pool    string `json:"pool,omitempty"`
	Weight  uint32 `json:"weight"`
}

// TrafficShadow is the variant that gets copies of Percent of the requests.
type TrafficShadow struct {
	Name    string  `json:"name"`
	Version string  `json:"version,omitempty"`
	Pool    string  `json:"pool,omitempty"`
	Percent float64 `json:"percent"`
}

// SetTrafficStatus sets where Status reads the traffic policies from (the
// builder's, which computes them on each rebuild); nil: none.
func (s *Server) SetTrafficStatus(f func() []TrafficPolicy) {
	s.mu.Lock()
	s.trafficStatus = f
	s.mu.Unlock()
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
	traffic := s.trafficStatus
	s.mu.Unlock()
	// Outside s.mu: the provider takes its own lock.
	var policies []TrafficPolicy
	if traffic != nil {
		policies = traffic()
	}
	if policies == nil {
		policies = []TrafficPolicy{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Versions: make(map[string]CacheVersion, len(s.versions)), NACKs: s.nacks, Nodes: []Node{}, Traffic: policies}
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
