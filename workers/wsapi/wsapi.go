// Package wsapi serves KServe v2 inference over WebSocket
// (docs/websocket.md): GET /v2/models/{m}[/versions/{v}]/infer/ws, mounted
// on the worker's REST server (httpapi.Options.WebSocket). Each message is
// one inference request with an id, decoded by httpapi's codec and run by
// the infer.Service like a REST or gRPC request (so it batches with them);
// answers go back as each finishes, matched by id.
package wsapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"go.opentelemetry.io/otel/propagation"

	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/infer"
)

// Defaults of Options' limits (the helix-worker flags' defaults).
const (
	DefaultMaxMessageBytes = 16 << 20
	DefaultMaxInFlight     = 64
	DefaultPingInterval    = 20 * time.Second
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultWriteTimeout    = 10 * time.Second
	// DefaultRecheckInterval bounds how long a revoked client's idle
	// connection stays open: the limiter is asked again after this long
	// without a message.
	DefaultRecheckInterval = 10 * time.Second
	// MaxIDBytes is the longest message id accepted.
	MaxIDBytes = 128
)

// Options configures the Server. Zero values take the defaults above.
type Options struct {
	// MaxMessageBytes caps one incoming message; a bigger one closes the
	// connection with 1009.
	MaxMessageBytes int64
	// MaxInFlight caps the messages of one connection being served at once;
	// beyond it the server stops reading (backpressure).
	MaxInFlight int
	// PingInterval is how often the server pings the client.
	PingInterval time.Duration
	// IdleTimeout closes a connection with no message in flight, none read
	// and no pong for this long.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one answer; a client that does not read
	// for this long loses its connection.
	WriteTimeout time.Duration
	// RecheckInterval: an idle connection re-asks the Limiter (Spend with
	// n=0) this often, so a revoked credential closes it within the bound.
	RecheckInterval time.Duration
	// MaxDecodedBytes bounds the decoded size of one JSON-encoded input (as
	// httpapi's MaxRequestBytes); 0 means MaxMessageBytes.
	MaxDecodedBytes int64
	// Limiter counts each message against the client's plan; nil counts
	// nothing. Messages of a connection without wire.HeaderClient (no
	// gateway in front) are not counted either.
	Limiter infer.MessageLimiter
	// Usage counts each message in the usage ledger (infer.RecordUsage).
	Usage *usage.Aggregator
	// Logger receives connection errors; nil means slog.Default().
	Logger *slog.Logger
}

// decoupledReporter is implemented by services that serve decoupled models
// (models.Manager): connections to those are refused at the upgrade.
type decoupledReporter interface {
	ModelDecoupled(model, version string) bool
}

// Server serves WebSocket inference connections and drains them.
type Server struct {
	svc  infer.Service
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining bool
	wg       sync.WaitGroup
}

// New returns a Server for svc.
func New(svc infer.Service, opts Options) *Server {
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.RecheckInterval <= 0 {
		opts.RecheckInterval = DefaultRecheckInterval
	}
	if opts.MaxDecodedBytes <= 0 {
		opts.MaxDecodedBytes = opts.MaxMessageBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{svc: svc, opts: opts, log: log, conns: make(map[*conn]struct{})}
}

// ServeInferWS upgrades r and serves its messages for model and version
// (already normalized by httpapi; "": the one a traffic policy chose in
// wire.HeaderModelVersion, else the model's policy) until the connection
// ends.
func (s *Server) ServeInferWS(w http.ResponseWriter, r *http.Request, model, version string) {
	authorized := r.Header.Values(wire.HeaderModel)
	if err := infer.CheckGatewayModel(authorized, model); err != nil {
		writeHTTPError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !offers(r.Header.Values(wire.HeaderWSProtocol), wire.WSProtocol) {
		writeHTTPError(w, http.StatusBadRequest, fmt.Sprintf(
			"WebSocket inference needs the subprotocol '%s' in Sec-WebSocket-Protocol", wire.WSProtocol))
		return
	}
	cred, err := credentialOf(r, model)
	if err != nil {
		writeHTTPError(w, http.StatusBadRequest, err.Error())
		return
	}
	rt, err := infer.ReadRouting(r.Header.Values(wire.HeaderModelVersion), r.Header.Values(wire.HeaderShadow))
	if err != nil {
		writeHTTPError(w, http.StatusBadRequest, err.Error())
		return
	}
	version = rt.VersionFor(version)
	if rt.Shadow {
		// A shadow copy (infer.Routing): served, but counted neither by
		// the limiter nor in the usage ledger, as a connection without
		// the gateway's client.
		cred.Client = ""
	}
	if d, ok := s.svc.(decoupledReporter); ok && d.ModelDecoupled(model, version) {
		// One answer per id is the protocol (docs/websocket.md); a decoupled
		// model answers zero or more times.
		writeHTTPError(w, http.StatusNotImplemented, fmt.Sprintf(
			"model '%s' is decoupled (it answers a request with zero or more responses), which WebSocket inference does not serve; use gRPC ModelStreamInfer or POST /v2/models/%s/generate_stream",
			model, model))
		return
	}
	s.mu.Lock()
	draining := s.draining
	if !draining {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if draining {
		writeHTTPError(w, http.StatusServiceUnavailable, "the worker is draining; connect again")
		return
	}
	defer s.wg.Done()

	c := newConn(s, model, version, authorized, cred)
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{wire.WSProtocol},
		CompressionMode: websocket.CompressionDisabled,
		// Browsers send an Origin; the credential, not the origin, is
		// what authorizes (checked by the gateway on this request).
		InsecureSkipVerify: true,
		OnPongReceived:     func(context.Context, []byte) { c.touch() },
	})
	if err != nil {
		// Accept has answered the client already.
		s.log.DebugContext(r.Context(), "websocket upgrade failed", "path", r.URL.Path, "error", err)
		return
	}
	c.ws = ws
	// The connection outlives the request's context rules; it ends when
	// the read loop does.
	base := context.WithoutCancel(r.Context())
	if telemetry.Enabled() {
		// The upgrade request's traceparent (the gateway's) parents every
		// message's span.
		base = infer.Extract(base, propagation.HeaderCarrier(r.Header))
	}
	c.ctx, c.cancel = context.WithCancel(base)
	c.work, c.cancelWork = context.WithCancel(c.ctx)
	ws.SetReadLimit(s.opts.MaxMessageBytes)
	if !s.track(c) {
		// Drain began during the upgrade.
		c.cancel()
		_ = ws.Close(websocket.StatusServiceRestart, "worker draining")
		return
	}
	defer s.untrack(c)
	c.serve()
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Drain refuses new connections, lets every connection's messages in
// flight finish (further messages are answered 503), then closes the
// connections with 1012 so that clients reconnect to another worker. It
// returns once every connection has ended, or closes the rest at once when
// ctx ends first. Call it before the HTTP server stops and the models
// unload.
func (s *Server) Drain(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		go c.drain(ctx)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			c.abort()
		}
		s.mu.Unlock()
		return fmt.Errorf("%d WebSocket connections still open after the drain timeout were closed: %w", n, ctx.Err())
	}
}

// offers reports whether the Sec-WebSocket-Protocol values list proto.
func offers(values []string, proto string) bool {
	for _, v := range values {
		for p := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(p) == proto {
				return true
			}
		}
	}
	return false
}

// credentialOf reads the stream's credential from the gateway's headers.
func credentialOf(r *http.Request, model string) (infer.StreamCredential, error) {
	c := infer.StreamCredential{
		Client:     r.Header.Get(wire.HeaderClient),
		Model:      model,
		Credential: r.Header.Get(wire.HeaderCredential),
	}
	if v := r.Header.Get(wire.HeaderExpires); v != "" {
		sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || sec <= 0 {
			return c, fmt.Errorf("header %s must be Unix seconds, got %q", wire.HeaderExpires, v)
		}
		c.Expires = time.Unix(sec, 0)
	}
	return c, nil
}

// writeHTTPError answers a refused upgrade in the REST error shape.
func writeHTTPError(w http.ResponseWriter, status int, msg string) {
	body := errorJSON(nil, msg, 0)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// closeStatus is the close code a read error carries, for the log.
func closeStatus(err error) websocket.StatusCode {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}
