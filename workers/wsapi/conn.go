package wsapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"go.opentelemetry.io/otel/trace"

	"github.com/helixflow/helixflow/internal/telemetry"
	"github.com/helixflow/helixflow/workers/httpapi"
	"github.com/helixflow/helixflow/workers/infer"
)

// conn is one WebSocket connection: a read loop that starts a goroutine
// per message (at most MaxInFlight at once), and a keeper that pings,
// times out, re-checks the credential and ends the connection at its
// expiry.
type conn struct {
	s              *Server
	ws             *websocket.Conn
	model, version string
	authorized     []string
	cred           infer.StreamCredential

	ctx    context.Context
	cancel context.CancelFunc
	// work is the messages' context: ended at once when the server closes
	// the connection, while ctx lives on for the close handshake.
	work       context.Context
	cancelWork context.CancelFunc
	// slots holds one token per message being served (and one for the
	// read loop's next message): when full, the read loop waits.
	slots    chan struct{}
	inFlight atomic.Int64
	msgs     sync.WaitGroup

	idMu sync.Mutex
	ids  map[string]struct{} // ids in flight

	lastActive atomic.Int64 // unix nanos of the last message or pong
	lastSpend  atomic.Int64 // unix nanos of the last limiter answer
	draining   atomic.Bool
	closeOnce  sync.Once
}

func newConn(s *Server, model, version string, authorized []string, cred infer.StreamCredential) *conn {
	c := &conn{
		s: s, model: model, version: version, authorized: authorized, cred: cred,
		slots: make(chan struct{}, s.opts.MaxInFlight),
		ids:   make(map[string]struct{}),
	}
	now := time.Now().UnixNano()
	c.lastActive.Store(now)
	c.lastSpend.Store(now)
	return c
}

func (c *conn) touch() { c.lastActive.Store(time.Now().UnixNano()) }

// serve reads messages until the connection ends, then waits for the
// messages in flight.
func (c *conn) serve() {
	defer c.cancel()
	go c.keep()
	log := c.s.log
	for {
		select {
		case c.slots <- struct{}{}: // backpressure: wait for a free slot
		case <-c.ctx.Done():
		}
		if c.ctx.Err() != nil {
			break
		}
		typ, r, err := c.ws.Reader(c.ctx)
		if err != nil {
			<-c.slots
			log.DebugContext(c.ctx, "websocket connection ended", "model", c.model, "close_code", closeStatus(err), "error", err)
			break
		}
		buf := getBuffer()
		if _, err := buf.ReadFrom(r); err != nil {
			// Over the read limit the library has closed with 1009.
			putBuffer(buf)
			<-c.slots
			log.DebugContext(c.ctx, "websocket message not read", "model", c.model, "close_code", closeStatus(err), "error", err)
			break
		}
		c.touch()
		if typ != websocket.MessageText && typ != websocket.MessageBinary {
			putBuffer(buf)
			<-c.slots
			c.closeWith(websocket.StatusUnsupportedData, "messages must be text or binary")
			break
		}
		c.inFlight.Add(1)
		c.msgs.Add(1)
		go c.handle(typ, buf)
	}
	// The client is gone or the connection is closing: nobody can read
	// the answers of the messages still running.
	c.cancel()
	c.msgs.Wait()
	_ = c.ws.CloseNow()
}

// closeWith closes the connection with code once, then ends the messages
// in flight. Close sends the close frame and waits for the client's, so it
// runs aside.
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.s.log.DebugContext(c.ctx, "closing websocket", "model", c.model, "code", int(code), "reason", reason)
		c.cancelWork()
		go func() {
			_ = c.ws.Close(code, truncateReason(reason))
			c.cancel()
		}()
	})
}

// abort ends the connection at once, without a close handshake.
func (c *conn) abort() {
	c.cancel() // first: CloseNow waits for a close handshake under way
	_ = c.ws.CloseNow()
}

// drain answers further messages 503, waits for those in flight, then
// closes with 1012.
func (c *conn) drain(ctx context.Context) {
	c.draining.Store(true)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for c.inFlight.Load() > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return // Drain aborts the connection
		case <-c.ctx.Done():
			return
		}
	}
	c.closeWith(websocket.StatusServiceRestart, "worker draining")
}

// keep pings the client, closes an idle connection, re-asks the limiter
// on an idle connection and closes the connection when its credential
// expires.
func (c *conn) keep() {
	o := c.s.opts
	ping := time.NewTicker(o.PingInterval)
	defer ping.Stop()
	// The re-check fires RecheckInterval after the last limiter answer
	// (a message's Spend answers too), so a revocation is seen within it.
	var recheck <-chan time.Time
	var recheckTimer *time.Timer
	if c.counted() {
		recheckTimer = time.NewTimer(o.RecheckInterval)
		defer recheckTimer.Stop()
		recheck = recheckTimer.C
	}
	var expiry <-chan time.Time
	if !c.cred.Expires.IsZero() {
		t := time.NewTimer(time.Until(c.cred.Expires))
		defer t.Stop()
		expiry = t.C
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-expiry:
			c.closeWith(websocket.StatusPolicyViolation, "credential expired")
			return
		case <-ping.C:
			idle := time.Since(time.Unix(0, c.lastActive.Load()))
			if c.inFlight.Load() == 0 && idle >= o.IdleTimeout {
				c.closeWith(websocket.StatusNormalClosure, "idle timeout")
				return
			}
			go func() {
				// The pong is noted by OnPongReceived; a ping that gets
				// none leaves the connection to the idle timeout.
				ctx, cancel := context.WithTimeout(c.ctx, o.PingInterval)
				defer cancel()
				_ = c.ws.Ping(ctx)
			}()
		case <-recheck:
			if since := time.Since(time.Unix(0, c.lastSpend.Load())); since < o.RecheckInterval {
				recheckTimer.Reset(o.RecheckInterval - since) // a message asked recently
				continue
			}
			v, err := o.Limiter.Spend(c.work, c.cred, 0)
			recheckTimer.Reset(o.RecheckInterval)
			if err != nil {
				// The limiter's trouble, not the client's: keep the
				// connection; messages are refused 503 meanwhile.
				c.s.log.WarnContext(c.ctx, "websocket credential re-check failed", "model", c.model, "error", err)
				continue
			}
			c.lastSpend.Store(time.Now().UnixNano())
			if v.Revoked {
				c.closeWith(websocket.StatusPolicyViolation, revokedReason(v))
				return
			}
		}
	}
}

// counted reports whether messages are counted by the limiter.
func (c *conn) counted() bool { return c.s.opts.Limiter != nil && c.cred.Client != "" }

func revokedReason(v infer.Verdict) string {
	if v.Reason != "" {
		return v.Reason
	}
	return "credential revoked"
}

// spanMessage names the server span of one WebSocket inference message; its
// parent is the upgrade request's trace context.
const spanMessage = "websocket infer message"

// handle serves one message.
func (c *conn) handle(typ websocket.MessageType, buf *bytes.Buffer) {
	defer func() {
		putBuffer(buf) // binary inputs alias it until the answer is written
		c.inFlight.Add(-1)
		<-c.slots
		c.msgs.Done()
	}()
	start := time.Now()
	call, id, err := c.decode(typ, buf.Bytes())
	if err != nil {
		c.recordUsage(nil, true, start)
		c.writeError(id, httpapi.HTTPStatus(err), err.Error())
		return
	}
	if !c.claim(*id) {
		c.recordUsage(call.Request(), true, start)
		c.writeError(id, http.StatusBadRequest, "id '"+*id+"' is already in flight on this connection")
		return
	}
	// The id is free again before its answer is written: a client may
	// send it again as soon as it reads the answer.
	release := sync.OnceFunc(func() { c.unclaim(*id) })
	defer release()
	// The message's span starts before the limiter is asked, so that the
	// Spend call to helix-authz joins the message's trace.
	ctx := c.work
	if telemetry.Enabled() {
		var span trace.Span
		ctx, span = infer.StartSpan(ctx, spanMessage, nil)
		defer span.End()
		infer.SetModel(ctx, c.model)
	}
	status, msg, limited := c.admit(ctx)
	if status != 0 {
		if !limited {
			// A message the limiter refused is counted by helix-authz
			// (throttled), as a refused REST request never reaches here.
			c.recordUsage(call.Request(), true, start)
		}
		release()
		c.writeError(id, status, msg)
		return
	}
	req := call.Request()
	resp, err := c.s.svc.Infer(ctx, req)
	if err != nil {
		infer.SpanError(trace.SpanFromContext(ctx), err)
		c.recordUsage(req, true, start)
		release()
		c.writeError(id, httpapi.HTTPStatus(err), err.Error())
		return
	}
	resp.ID = *id
	release()
	encodeStart := infer.EncodeStart(ctx)
	err = c.writeResponse(resp, call)
	infer.EncodeDone(ctx, encodeStart)
	if err != nil {
		c.recordUsage(req, true, start)
		var ie *infer.Error
		if errors.As(err, &ie) { // encoding failed, the connection is fine
			c.writeError(id, httpapi.HTTPStatus(err), err.Error())
		}
		return
	}
	c.recordUsage(req, false, start)
}

// admit asks the limiter for the message: 0 lets it run, else the status
// and message to answer it with, and whether the limiter refused it. A
// revoked credential closes the connection.
func (c *conn) admit(ctx context.Context) (status int, msg string, limited bool) {
	if c.draining.Load() {
		return http.StatusServiceUnavailable, "the worker is draining; send this message again on a new connection", false
	}
	if !c.counted() {
		return 0, "", false
	}
	v, err := c.s.opts.Limiter.Spend(ctx, c.cred, 1)
	if err != nil {
		c.s.log.WarnContext(ctx, "websocket message limit check failed", "model", c.model, "error", err)
		return http.StatusServiceUnavailable, "the plan's limits could not be checked; try again", true
	}
	c.lastSpend.Store(time.Now().UnixNano())
	switch {
	case v.Revoked:
		c.closeWith(websocket.StatusPolicyViolation, revokedReason(v))
		return http.StatusForbidden, revokedReason(v), true
	case v.OverLimit || !v.Allowed:
		msg = "rate limit exceeded"
		if v.Reason != "" {
			msg += ": " + v.Reason
		}
		return http.StatusTooManyRequests, msg, true
	}
	return 0, "", false
}

func (c *conn) claim(id string) bool {
	c.idMu.Lock()
	defer c.idMu.Unlock()
	if _, dup := c.ids[id]; dup {
		return false
	}
	c.ids[id] = struct{}{}
	return true
}

func (c *conn) unclaim(id string) {
	c.idMu.Lock()
	delete(c.ids, id)
	c.idMu.Unlock()
}

func (c *conn) recordUsage(req *infer.Request, failed bool, start time.Time) {
	infer.RecordUsage(c.s.opts.Usage, c.cred.Client, c.authorized, c.model, req, failed, start)
}

// decode parses a message; id is the message's id when it could be read,
// also for an error.
func (c *conn) decode(typ websocket.MessageType, msg []byte) (*httpapi.InferCall, *string, error) {
	body, headerLen, err := splitFrame(typ, msg)
	if err != nil {
		return nil, nil, err
	}
	call, err := httpapi.DecodeInferRequest(c.model, c.version, body, headerLen, c.s.opts.MaxDecodedBytes)
	if err != nil {
		return nil, peekID(body[:headerLen]), err
	}
	id := call.Request().ID
	switch {
	case id == "":
		return nil, nil, invalid("message has no 'id': each message needs a string id, unique among the connection's messages in flight")
	case len(id) > MaxIDBytes:
		return nil, nil, invalid("message id is %d bytes; at most %d are allowed", len(id), MaxIDBytes)
	}
	return call, &id, nil
}

// splitFrame returns a message's request body and the length of its JSON
// header: a text message is all JSON; a binary one is a 4-byte
// little-endian header length, the JSON header and the binary tensors.
func splitFrame(typ websocket.MessageType, msg []byte) (body []byte, headerLen int, err error) {
	if typ == websocket.MessageText {
		return msg, len(msg), nil
	}
	if len(msg) < 4 {
		return nil, 0, invalid("binary message is %d bytes, shorter than its 4-byte header length", len(msg))
	}
	n := binary.LittleEndian.Uint32(msg)
	body = msg[4:]
	switch {
	case n == 0:
		return nil, 0, invalid("binary message has an empty JSON header; it must hold the request with its 'id'")
	case uint64(n) > uint64(len(body)):
		return nil, 0, invalid("binary message's header length is %d bytes but only %d bytes follow it", n, len(body))
	}
	return body, int(n), nil
}

func invalid(format string, args ...any) error {
	return infer.Errorf(infer.CodeInvalidArgument, format, args...)
}

// peekID reads the id of a request that did not decode, so that its error
// can name it; nil when there is none.
func peekID(header []byte) *string {
	var v struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(header, &v) != nil {
		return nil
	}
	var id string
	if json.Unmarshal(v.ID, &id) != nil || id == "" || len(id) > MaxIDBytes {
		return nil
	}
	return &id
}

// writeResponse sends resp: a binary message when any output is binary
// data, else a text one.
func (c *conn) writeResponse(resp *infer.Response, call *httpapi.InferCall) error {
	asBinary := false
	for i := range resp.Outputs {
		if call.BinaryOutput(resp.Outputs[i].Name) {
			asBinary = true
			break
		}
	}
	bufp := responseBuffers.Get().(*[]byte)
	defer func() {
		if cap(*bufp) <= maxPooledBuffer {
			responseBuffers.Put(bufp)
		}
	}()
	dst := (*bufp)[:0]
	if asBinary {
		dst = append(dst, 0, 0, 0, 0) // the header length, filled below
	}
	out, binaries, err := httpapi.EncodeInferResponse(dst, resp, call)
	*bufp = out[:0]
	if err != nil {
		return err
	}
	if !asBinary {
		return c.write(websocket.MessageText, out)
	}
	binary.LittleEndian.PutUint32(out, uint32(len(out)-4))
	return c.write(websocket.MessageBinary, out, binaries...)
}

// writeError answers one message with an error; the connection stays.
func (c *conn) writeError(id *string, status int, msg string) {
	level := slog.LevelDebug
	if status >= 500 && status != http.StatusServiceUnavailable && status != http.StatusNotImplemented {
		level = slog.LevelError
	}
	c.s.log.Log(c.ctx, level, "websocket message failed", "model", c.model, "status", status, "error", msg)
	_ = c.write(websocket.MessageText, errorJSON(id, msg, status))
}

// write sends one message made of parts within the write timeout. A
// client that does not read for that long loses the connection (the
// library closes it when the write's context ends).
func (c *conn) write(typ websocket.MessageType, first []byte, rest ...[]byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.s.opts.WriteTimeout)
	defer cancel()
	if len(rest) == 0 {
		return c.ws.Write(ctx, typ, first)
	}
	w, err := c.ws.Writer(ctx, typ)
	if err != nil {
		return err
	}
	if _, err := w.Write(first); err != nil {
		_ = w.Close()
		return err
	}
	for _, p := range rest {
		if _, err := w.Write(p); err != nil {
			_ = w.Close()
			return err
		}
	}
	return w.Close()
}

// errorJSON is the error answer {"id": ..., "error": ..., "code": ...};
// code 0 leaves code out (a refused upgrade's HTTP body).
func errorJSON(id *string, msg string, code int) []byte {
	v := struct {
		ID    *string `json:"id"`
		Error string  `json:"error"`
		Code  int     `json:"code,omitempty"`
	}{id, strings.ToValidUTF8(msg, "\uFFFD"), code}
	if code == 0 {
		b, _ := json.Marshal(struct {
			Error string `json:"error"`
		}{v.Error})
		return b
	}
	b, _ := json.Marshal(v)
	return b
}

// truncateReason keeps a close reason within the 123 bytes a close frame
// allows.
func truncateReason(s string) string {
	if len(s) <= 123 {
		return s
	}
	s = s[:123]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

var (
	readBuffers     = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	responseBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
)

const maxPooledBuffer = 1 << 20

func getBuffer() *bytes.Buffer { return readBuffers.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	readBuffers.Put(b)
}
