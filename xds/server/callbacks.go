package server

import (
	"context"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// stream is what the server knows of one ADS stream.
type stream struct {
	id          int64
	delta       bool
	peer        string
	nodeID      string
	nodeCluster string
	// identity is the caller's (Options.Readers; "" unchecked).
	identity    string
	connectedAt time.Time
	types       map[string]*typeState // by type URL
}

// typeState is one resource type on one stream: what the node subscribed
// to, the last response sent and what it acknowledged. Publish reads it to
// know when a node has taken (and warmed) a bridge snapshot.
type typeState struct {
	// names subscribed: for SotW those of the latest request, for delta
	// the running sum of its subscribes and unsubscribes. Empty: wildcard.
	names map[string]bool
	// subscription counts changes of names; sentSubscription is its value
	// when the last response was sent (that response reflects names).
	subscription, sentSubscription uint64
	sentNonce, sentVersion         string
	ackedNonce, rejectedNonce      string
	acked                          string // version acknowledged
}

// settled: the last response sent reflects the current subscription and
// the node has acknowledged it.
func (ts *typeState) settled() bool {
	return ts.sentNonce != "" && ts.ackedNonce == ts.sentNonce && ts.sentSubscription == ts.subscription
}

// has reports whether every name in want is subscribed.
func (ts *typeState) has(want []string) bool {
	for _, n := range want {
		if !ts.names[n] {
			return false
		}
	}
	return true
}

// hasAny reports whether any name in want is subscribed by name (a
// wildcard subscription names none).
func (ts *typeState) hasAny(want []string) bool {
	for _, n := range want {
		if ts.names[n] {
			return true
		}
	}
	return false
}

func (st *stream) state(typeURL string) *typeState {
	ts, ok := st.types[typeURL]
	if !ok {
		ts = &typeState{names: map[string]bool{}}
		st.types[typeURL] = ts
	}
	return ts
}

// subscription is a request's change of subscribed names.
type subscription struct {
	// sotw: names is the whole subscription; otherwise subscribe and
	// unsubscribe change it.
	sotw                   bool
	names                  []string
	subscribe, unsubscribe []string
}

func (ts *typeState) apply(sub subscription) {
	changed := false
	if sub.sotw {
		if len(sub.names) != len(ts.names) {
			changed = true
		}
		next := make(map[string]bool, len(sub.names))
		for _, n := range sub.names {
			next[n] = true
			if !ts.names[n] {
				changed = true
			}
		}
		ts.names = next
	} else {
		for _, n := range sub.subscribe {
			if !ts.names[n] {
				ts.names[n], changed = true, true
			}
		}
		for _, n := range sub.unsubscribe {
			if ts.names[n] {
				delete(ts.names, n)
				changed = true
			}
		}
	}
	if changed {
		ts.subscription++
	}
}

// callbacks implements go-control-plane's server callbacks: stream
// bookkeeping, ACK and NACK accounting, and the NACK loop breaker.
type callbacks struct{ s *Server }

func (c *callbacks) open(ctx context.Context, id int64, delta bool) error {
	st := &stream{id: id, delta: delta, connectedAt: time.Now(), types: map[string]*typeState{}}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		st.peer = p.Addr.String()
	}
	var err error
	if st.identity, err = c.s.authorize(ctx); err != nil {
		c.s.log.Warn("refusing an ADS stream", "stream", id, "peer", st.peer, "error", err)
		return err
	}
	c.s.mu.Lock()
	c.s.streams[id] = st
	c.s.mu.Unlock()
	c.s.metrics.connected.Inc()
	c.s.log.Debug("ADS stream opened", "stream", id, "delta", delta, "peer", st.peer, "identity", st.identity)
	return nil
}

func (c *callbacks) closed(id int64, node *core.Node) {
	c.s.mu.Lock()
	_, ok := c.s.streams[id]
	delete(c.s.streams, id)
	c.s.notifyLocked()
	c.s.mu.Unlock()
	if ok {
		c.s.metrics.connected.Dec()
	}
	c.s.log.Info("Envoy disconnected", "stream", id, "node", node.GetId())
}

// request handles what SOTW and delta requests share: the node's identity
// (first request), ACK accounting and NACK recording. It returns the
// version of the response a NACK rejects ("" when unknown) and whether req
// is a NACK.
func (c *callbacks) request(id int64, node *core.Node, typeURL, nonce, version string, sub subscription, errDetail *rpcstatus.Status) (rejected string, nack bool, err error) {
	s := c.s
	s.mu.Lock()
	st, ok := s.streams[id]
	if !ok {
		s.mu.Unlock()
		return "", false, nil
	}
	firstSeen := node != nil && st.nodeID == ""
	if firstSeen {
		st.nodeID, st.nodeCluster = node.GetId(), node.GetCluster()
	}
	nodeID, cluster, peerAddr, delta := st.nodeID, st.nodeCluster, st.peer, st.delta
	ts := st.state(typeURL)
	ts.apply(sub)
	known := nonce != "" && ts.sentNonce == nonce
	var latency time.Duration
	switch {
	case errDetail != nil:
		if known {
			rejected = ts.sentVersion
			ts.rejectedNonce = nonce
		}
		s.nacks++
		s.lastNACK = &NACK{Node: nodeID, Type: typeLabel(typeURL), TypeURL: typeURL, Version: rejected, Code: codes.Code(errDetail.GetCode()).String(), Message: errDetail.GetMessage(), At: time.Now()}
	case known:
		ts.ackedNonce = nonce
		if ts.acked != ts.sentVersion {
			ts.acked = ts.sentVersion
			if at, ok := s.published[ts.sentVersion]; ok {
				latency = time.Since(at)
			}
		}
	case version != "" && ts.acked == "":
		// A node that reconnects (to this server after a restart) states
		// the version it holds; when that is what is published, no
		// response follows, so this is its acknowledgement.
		ts.acked = version
	}
	s.notifyLocked()
	s.mu.Unlock()

	if firstSeen {
		if s.nodeCluster != "" && cluster != s.nodeCluster {
			s.log.Warn("refusing Envoy of another node cluster", "node", nodeID, "cluster", cluster, "want", s.nodeCluster, "peer", peerAddr)
			return "", false, status.Errorf(codes.PermissionDenied, "node cluster %q is not served here (want %q)", cluster, s.nodeCluster)
		}
		s.log.Info("Envoy connected", "node", nodeID, "cluster", cluster, "stream", id, "delta", delta, "peer", peerAddr)
	}
	if errDetail != nil {
		s.metrics.nacks.WithLabelValues(typeLabel(typeURL)).Inc()
		s.log.Warn("Envoy rejected config (NACK); it keeps its last accepted config",
			"node", nodeID, "type", typeLabel(typeURL), "rejected_version", rejected, "accepted_version", version, "code", codes.Code(errDetail.GetCode()).String(), "error", errDetail.GetMessage())
		return rejected, true, nil
	}
	if latency > 0 {
		s.metrics.pushLatency.WithLabelValues(typeLabel(typeURL)).Observe(latency.Seconds())
	}
	return "", false, nil
}

func (c *callbacks) response(id int64, typeURL, nonce, version string) {
	c.s.mu.Lock()
	if st, ok := c.s.streams[id]; ok {
		ts := st.state(typeURL)
		ts.sentNonce, ts.sentVersion, ts.sentSubscription = nonce, version, ts.subscription
	}
	c.s.mu.Unlock()
}

// OnStreamOpen implements sotw.Callbacks.
func (c *callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.open(ctx, id, false)
}

// OnStreamClosed implements sotw.Callbacks.
func (c *callbacks) OnStreamClosed(id int64, node *core.Node) { c.closed(id, node) }

// OnStreamRequest implements sotw.Callbacks. On a NACK it sets the
// request's version to the rejected one: the snapshot cache then sees an
// Envoy that has the current version and waits for the next, instead of
// resending the rejected config in a loop.
func (c *callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	sub := subscription{sotw: true, names: req.GetResourceNames()}
	rejected, nack, err := c.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), sub, req.GetErrorDetail())
	if err != nil {
		return err
	}
	if nack && rejected != "" {
		req.VersionInfo = rejected
	}
	return nil
}

// OnStreamResponse implements sotw.Callbacks.
func (c *callbacks) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.response(id, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

// OnDeltaStreamOpen implements delta.Callbacks.
func (c *callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	return c.open(ctx, id, true)
}

// OnDeltaStreamClosed implements delta.Callbacks.
func (c *callbacks) OnDeltaStreamClosed(id int64, node *core.Node) { c.closed(id, node) }

// OnStreamDeltaRequest implements delta.Callbacks. Delta needs no loop
// breaker: the server records what it sent, so a NACK finds nothing new.
func (c *callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	sub := subscription{subscribe: req.GetResourceNamesSubscribe(), unsubscribe: req.GetResourceNamesUnsubscribe()}
	_, _, err := c.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), "", sub, req.GetErrorDetail())
	return err
}

// OnStreamDeltaResponse implements delta.Callbacks.
func (c *callbacks) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.response(id, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

// OnFetchRequest implements rest.Callbacks; REST xDS is not served.
func (c *callbacks) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "REST xDS is not served; use ADS")
}

// OnFetchResponse implements rest.Callbacks.
func (c *callbacks) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}
