package wsapi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/httpapi"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
	"github.com/helixflow/helixflow/workers/wsapi"
)

// fakeService echoes each input back as an output of the same name. A
// request's parameters steer it: "delay_ms" sleeps first, "block" waits
// for release, "fail" answers NOT_FOUND. It counts calls and the most
// running at once.
type fakeService struct {
	release            chan struct{}
	calls, running     atomic.Int64
	maxRunning         atomic.Int64
	started            chan string // ids, when not nil
	outputBytes        int         // when > 0, one BYTES-free UINT8 output of this size
	lastModel, lastVer atomic.Value
}

func newFake() *fakeService { return &fakeService{release: make(chan struct{})} }

func (f *fakeService) Infer(ctx context.Context, req *infer.Request) (*infer.Response, error) {
	f.calls.Add(1)
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		m := f.maxRunning.Load()
		if n <= m || f.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	f.lastModel.Store(req.Model)
	f.lastVer.Store(req.Version)
	if f.started != nil {
		f.started <- req.ID
	}
	if d, ok := req.Parameters["delay_ms"].(int64); ok {
		select {
		case <-time.After(time.Duration(d) * time.Millisecond):
		case <-ctx.Done():
			return nil, infer.Errorf(infer.CodeCancelled, "cancelled")
		}
	}
	if _, ok := req.Parameters["block"]; ok {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, infer.Errorf(infer.CodeCancelled, "cancelled")
		}
	}
	if _, ok := req.Parameters["fail"]; ok {
		return nil, infer.Errorf(infer.CodeNotFound, "Request for unknown model: 'nope' is not found")
	}
	req.Usage = infer.Usage{Rows: 1, Compute: time.Millisecond}
	outs := req.Inputs
	if f.outputBytes > 0 {
		outs = []tensor.Tensor{{Name: "BIG", DataType: tensor.Uint8, Shape: []int64{int64(f.outputBytes)}, Data: make([]byte, f.outputBytes)}}
	}
	return &infer.Response{Model: req.Model, Version: "1", ID: req.ID, Outputs: outs}, nil
}

func (f *fakeService) ServerMetadata() infer.ServerMetadata { return infer.ServerMetadata{} }
func (f *fakeService) Live() bool                           { return true }
func (f *fakeService) Ready() bool                          { return true }
func (f *fakeService) ModelReady(context.Context, string, string) (bool, error) {
	return true, nil
}
func (f *fakeService) ModelMetadata(context.Context, string, string) (*infer.ModelMetadata, error) {
	return nil, infer.Errorf(infer.CodeUnimplemented, "no")
}
func (f *fakeService) ModelConfig(context.Context, string, string) (*pb.ModelConfig, error) {
	return nil, infer.Errorf(infer.CodeUnimplemented, "no")
}
func (f *fakeService) ModelStatistics(context.Context, string, string) ([]*pb.ModelStatistics, error) {
	return nil, nil
}
func (f *fakeService) RepositoryIndex(context.Context, bool) ([]infer.IndexEntry, error) {
	return nil, nil
}
func (f *fakeService) LoadModel(context.Context, string, infer.LoadOptions) error { return nil }
func (f *fakeService) UnloadModel(context.Context, string, bool) error            { return nil }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// start serves svc through httpapi with the WebSocket endpoint mounted.
func start(t *testing.T, svc infer.Service, opts wsapi.Options) (*wsapi.Server, string) {
	t.Helper()
	opts.Logger = quiet
	ws := wsapi.New(svc, opts)
	ts := httptest.NewServer(httpapi.NewHandler(svc, httpapi.Options{Logger: quiet, WebSocket: ws}))
	t.Cleanup(ts.Close)
	return ws, "ws" + strings.TrimPrefix(ts.URL, "http") + "/v2/models/echo/infer/ws"
}

func dial(t *testing.T, url string, hdr http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{
		Subprotocols: []string{wire.WSProtocol}, HTTPHeader: hdr,
	})
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", url, err, resp)
	}
	if c.Subprotocol() != wire.WSProtocol {
		t.Fatalf("subprotocol %q, want %q", c.Subprotocol(), wire.WSProtocol)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func send(t *testing.T, c *websocket.Conn, typ websocket.MessageType, msg []byte) {
	t.Helper()
	if err := c.Write(ctx5(t), typ, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// answer is a decoded answer: the JSON header, and for a binary message
// the bytes after it.
type answer struct {
	typ  websocket.MessageType
	json map[string]any
	raw  []byte
}

func (a answer) id() any { return a.json["id"] }

func (a answer) code() int {
	c, _ := a.json["code"].(float64)
	return int(c)
}

func read(t *testing.T, c *websocket.Conn) answer {
	t.Helper()
	typ, msg, err := c.Read(ctx5(t))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	a := answer{typ: typ}
	header := msg
	if typ == websocket.MessageBinary {
		n := binary.LittleEndian.Uint32(msg)
		header, a.raw = msg[4:4+n], msg[4+n:]
	}
	if err := json.Unmarshal(header, &a.json); err != nil {
		t.Fatalf("answer is not JSON: %v: %q", err, header)
	}
	return a
}

// binaryFrame frames header and tensors as docs/websocket.md says.
func binaryFrame(header string, tensors ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(header)))
	b = append(b, header...)
	for _, t := range tensors {
		b = append(b, t...)
	}
	return b
}

// closeCode waits for the connection to end and returns its close code.
func closeCode(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	for {
		_, _, err := c.Read(ctx5(t))
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("connection still open")
			}
			return websocket.CloseStatus(err)
		}
	}
}

// datatypes: every KServe datatype with JSON data and its raw bytes.
var datatypes = []struct {
	dt   tensor.DataType
	json string
	raw  []byte
}{
	{tensor.Bool, `[true,false]`, []byte{1, 0}},
	{tensor.Uint8, `[1,255]`, []byte{1, 255}},
	{tensor.Uint16, `[1,65535]`, []byte{1, 0, 255, 255}},
	{tensor.Uint32, `[1,4294967295]`, []byte{1, 0, 0, 0, 255, 255, 255, 255}},
	{tensor.Uint64, `[1,2]`, []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}},
	{tensor.Int8, `[-1,2]`, []byte{255, 2}},
	{tensor.Int16, `[-1,2]`, []byte{255, 255, 2, 0}},
	{tensor.Int32, `[-1,2]`, []byte{255, 255, 255, 255, 2, 0, 0, 0}},
	{tensor.Int64, `[-1,2]`, []byte{255, 255, 255, 255, 255, 255, 255, 255, 2, 0, 0, 0, 0, 0, 0, 0}},
	{tensor.FP16, `[1.5,-2]`, []byte{0x00, 0x3e, 0x00, 0xc0}},
	{tensor.BF16, `[1.5,-2]`, []byte{0xc0, 0x3f, 0x00, 0xc0}},
	{tensor.FP32, `[1.5,-2]`, []byte{0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0}},
	{tensor.FP64, `[1.5,-2]`, []byte{0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0xc0}},
	{tensor.Bytes, `["ab","c"]`, tensor.EncodeBytes([][]byte{[]byte("ab"), []byte("c")})},
}

// TestEveryDatatype: each datatype round-trips as JSON in text messages
// and as raw tensors in binary messages (the answer binary too).
func TestEveryDatatype(t *testing.T) {
	_, url := start(t, newFake(), wsapi.Options{})
	c := dial(t, url, nil)
	for _, d := range datatypes {
		t.Run(string(d.dt)+"/json", func(t *testing.T) {
			send(t, c, websocket.MessageText, []byte(`{"id":"j-`+string(d.dt)+`","inputs":[{"name":"X","datatype":"`+string(d.dt)+`","shape":[2],"data":`+d.json+`}]}`))
			a := read(t, c)
			if a.typ != websocket.MessageText || a.id() != "j-"+string(d.dt) {
				t.Fatalf("answer %v %v", a.typ, a.json)
			}
			out := a.json["outputs"].([]any)[0].(map[string]any)
			got, _ := json.Marshal(out["data"])
			if string(got) != d.json || out["datatype"] != string(d.dt) {
				t.Errorf("output %s %s, want %s", out["datatype"], got, d.json)
			}
		})
		t.Run(string(d.dt)+"/binary", func(t *testing.T) {
			h := `{"id":"b-` + string(d.dt) + `","parameters":{"binary_data_output":true},"inputs":[{"name":"X","datatype":"` +
				string(d.dt) + `","shape":[2],"parameters":{"binary_data_size":` + strconv.Itoa(len(d.raw)) + `}}]}`
			send(t, c, websocket.MessageBinary, binaryFrame(h, d.raw))
			a := read(t, c)
			if a.typ != websocket.MessageBinary || a.id() != "b-"+string(d.dt) {
				t.Fatalf("answer %v %v", a.typ, a.json)
			}
			out := a.json["outputs"].([]any)[0].(map[string]any)
			size := out["parameters"].(map[string]any)["binary_data_size"].(float64)
			if !bytes.Equal(a.raw, d.raw) || int(size) != len(d.raw) {
				t.Errorf("binary output %v (size %v), want %v", a.raw, size, d.raw)
			}
		})
	}
}

// TestBinaryRequestJSONAnswer: binary inputs with JSON outputs answer in
// a text message; JSON inputs asking for a binary output answer binary.
func TestBinaryRequestJSONAnswer(t *testing.T) {
	_, url := start(t, newFake(), wsapi.Options{})
	c := dial(t, url, nil)
	send(t, c, websocket.MessageBinary, binaryFrame(`{"id":"1","inputs":[{"name":"X","datatype":"INT32","shape":[1],"parameters":{"binary_data_size":4}}]}`, []byte{7, 0, 0, 0}))
	if a := read(t, c); a.typ != websocket.MessageText || a.json["outputs"].([]any)[0].(map[string]any)["data"].([]any)[0] != 7.0 {
		t.Fatalf("answer %v %v", a.typ, a.json)
	}
	send(t, c, websocket.MessageText, []byte(`{"id":"2","inputs":[{"name":"X","datatype":"INT32","shape":[1],"data":[9]}],"outputs":[{"name":"X","parameters":{"binary_data":true}}]}`))
	if a := read(t, c); a.typ != websocket.MessageBinary || !bytes.Equal(a.raw, []byte{9, 0, 0, 0}) {
		t.Fatalf("answer %v %v %v", a.typ, a.json, a.raw)
	}
}

// TestVersionFromPath: /versions/{v}/infer/ws passes the version on.
func TestVersionFromPath(t *testing.T) {
	f := newFake()
	_, url := start(t, f, wsapi.Options{})
	c := dial(t, strings.Replace(url, "/infer/ws", "/versions/007/infer/ws", 1), nil)
	send(t, c, websocket.MessageText, []byte(`{"id":"v","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
	if a := read(t, c); a.code() != 0 {
		t.Fatalf("answer %v", a.json)
	}
	if f.lastModel.Load() != "echo" || f.lastVer.Load() != "7" {
		t.Errorf("service saw %v version %v", f.lastModel.Load(), f.lastVer.Load())
	}
}

// TestOutOfOrder: a fast message sent after a slow one is answered first,
// both on one connection.
func TestOutOfOrder(t *testing.T) {
	_, url := start(t, newFake(), wsapi.Options{})
	c := dial(t, url, nil)
	send(t, c, websocket.MessageText, []byte(`{"id":"slow","parameters":{"delay_ms":400},"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
	send(t, c, websocket.MessageText, []byte(`{"id":"fast","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[2]}]}`))
	if a := read(t, c); a.id() != "fast" {
		t.Fatalf("first answer %v, want fast", a.json)
	}
	if a := read(t, c); a.id() != "slow" {
		t.Fatalf("second answer %v, want slow", a.json)
	}
}

// TestMessageErrors: a bad message gets {"id","error","code"} and the
// connection keeps serving.
func TestMessageErrors(t *testing.T) {
	_, url := start(t, newFake(), wsapi.Options{})
	c := dial(t, url, nil)
	long := strings.Repeat("x", wsapi.MaxIDBytes+1)
	tests := []struct {
		name string
		typ  websocket.MessageType
		msg  []byte
		id   any
		code int
		says string
	}{
		{"invalid JSON", websocket.MessageText, []byte(`{"id":"a",`), nil, 400, "malformed JSON"},
		{"no id", websocket.MessageText, []byte(`{"inputs":[]}`), nil, 400, "no 'id'"},
		{"numeric id", websocket.MessageText, []byte(`{"id":5,"inputs":[]}`), nil, 400, "id"},
		{"long id", websocket.MessageText, []byte(`{"id":"` + long + `","inputs":[]}`), nil, 400, "at most 128"},
		{"bad datatype", websocket.MessageText, []byte(`{"id":"d","inputs":[{"name":"X","datatype":"FP8","shape":[1],"data":[1]}]}`), "d", 400, "unknown datatype"},
		{"wrong element count", websocket.MessageText, []byte(`{"id":"n","inputs":[{"name":"X","datatype":"INT8","shape":[3],"data":[1]}]}`), "n", 400, "X"},
		{"service error", websocket.MessageText, []byte(`{"id":"f","parameters":{"fail":true},"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`), "f", 404, "unknown model"},
		{"reserved parameter", websocket.MessageText, []byte(`{"id":"r","parameters":{"triton_x":1},"inputs":[]}`), "r", 400, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			send(t, c, tt.typ, tt.msg)
			a := read(t, c)
			if a.id() != tt.id || a.code() != tt.code || !strings.Contains(a.json["error"].(string), tt.says) {
				t.Errorf("answer %v, want id %v code %d error with %q", a.json, tt.id, tt.code, tt.says)
			}
		})
	}
	send(t, c, websocket.MessageText, []byte(`{"id":"ok","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
	if a := read(t, c); a.id() != "ok" || a.code() != 0 {
		t.Fatalf("after errors: %v", a.json)
	}
}

// TestDuplicateID: an id already in flight is refused; the first message
// is still answered.
func TestDuplicateID(t *testing.T) {
	f := newFake()
	_, url := start(t, f, wsapi.Options{})
	c := dial(t, url, nil)
	msg := []byte(`{"id":"same","parameters":{"block":true},"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`)
	send(t, c, websocket.MessageText, msg)
	waitFor(t, func() bool { return f.running.Load() == 1 })
	send(t, c, websocket.MessageText, msg)
	if a := read(t, c); a.id() != "same" || a.code() != 400 || !strings.Contains(a.json["error"].(string), "already in flight") {
		t.Fatalf("duplicate: %v", a.json)
	}
	close(f.release)
	if a := read(t, c); a.id() != "same" || a.code() != 0 {
		t.Fatalf("first: %v", a.json)
	}
}

// TestBinaryLyingLengths: binary messages whose lengths lie are refused
// one by one, the connection kept.
func TestBinaryLyingLengths(t *testing.T) {
	_, url := start(t, newFake(), wsapi.Options{})
	c := dial(t, url, nil)
	hdr := func(size int) string {
		return `{"id":"L","inputs":[{"name":"X","datatype":"INT32","shape":[1],"parameters":{"binary_data_size":` + strconv.Itoa(size) + `}}]}`
	}
	over := binary.LittleEndian.AppendUint32(nil, 1000)
	tests := []struct {
		name string
		msg  []byte
		id   any
		says string
	}{
		{"shorter than the length", []byte{1, 2}, nil, "shorter than its 4-byte header length"},
		{"header length past the end", append(over, `{"id":"x"}`...), nil, "header length is 1000 bytes but only 10"},
		{"header length 0", append(binary.LittleEndian.AppendUint32(nil, 0), 1, 2, 3), nil, "empty JSON header"},
		{"header length cuts the JSON", append(binary.LittleEndian.AppendUint32(nil, 5), hdr(4)...), nil, "malformed JSON"},
		{"tensor size past the end", binaryFrame(hdr(8), []byte{1, 0, 0, 0}), "L", "binary_data_size is 8 bytes but only 4"},
		{"tensor size short of the data", binaryFrame(hdr(4), []byte{1, 0, 0, 0, 9}), "L", "1 bytes after the last binary input"},
		{"tensor size not the shape's", binaryFrame(hdr(2), []byte{1, 0}), "L", "X"},
		{"huge tensor size", binaryFrame(hdr(1<<62), nil), "L", "binary_data_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			send(t, c, websocket.MessageBinary, tt.msg)
			a := read(t, c)
			if a.id() != tt.id || a.code() != 400 || !strings.Contains(a.json["error"].(string), tt.says) {
				t.Errorf("answer %v, want id %v, 400, error with %q", a.json, tt.id, tt.says)
			}
		})
	}
	send(t, c, websocket.MessageBinary, binaryFrame(hdr(4), []byte{1, 0, 0, 0}))
	if a := read(t, c); a.id() != "L" || a.code() != 0 {
		t.Fatalf("after errors: %v", a.json)
	}
}

// TestTooBig: a message over the limit closes the connection with 1009.
func TestTooBig(t *testing.T) {
	f := newFake()
	_, url := start(t, f, wsapi.Options{MaxMessageBytes: 1024})
	c := dial(t, url, nil)
	msg := `{"id":"big","inputs":[{"name":"X","datatype":"BYTES","shape":[1],"data":["` + strings.Repeat("a", 2000) + `"]}]}`
	_ = c.Write(ctx5(t), websocket.MessageText, []byte(msg))
	if code := closeCode(t, c); code != websocket.StatusMessageTooBig {
		t.Fatalf("close code %v, want 1009", code)
	}
	if f.calls.Load() != 0 {
		t.Error("the service saw the message")
	}
}

// TestUpgradeRefused: no subprotocol, another model than the gateway's,
// a bad expiry header: 400 before any upgrade.
func TestUpgradeRefused(t *testing.T) {
	_, url := start(t, newFake(), wsapi.Options{})
	tests := []struct {
		name  string
		proto []string
		hdr   http.Header
		says  string
	}{
		{"no subprotocol", nil, nil, wire.WSProtocol},
		{"other subprotocol", []string{"graphql-ws"}, nil, wire.WSProtocol},
		{"other model", []string{wire.WSProtocol}, http.Header{wire.HeaderModel: {"other"}}, "gateway authorized model 'other'"},
		{"bad expiry", []string{wire.WSProtocol}, http.Header{wire.HeaderExpires: {"soon"}}, wire.HeaderExpires},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, resp, err := websocket.Dial(ctx5(t), url, &websocket.DialOptions{Subprotocols: tt.proto, HTTPHeader: tt.hdr})
			if err == nil {
				t.Fatal("upgrade succeeded")
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 400 || !strings.Contains(string(body), tt.says) {
				t.Errorf("status %d body %s, want 400 with %q", resp.StatusCode, body, tt.says)
			}
		})
	}
}

// TestBackpressure: with MaxInFlight messages running, the server reads
// no more: the service never sees more than MaxInFlight at once, and every
// message is answered once they finish.
func TestBackpressure(t *testing.T) {
	f := newFake()
	const inFlight, sent = 3, 40
	_, url := start(t, f, wsapi.Options{MaxInFlight: inFlight})
	c := dial(t, url, nil)
	go func() {
		for i := range sent {
			_ = c.Write(context.Background(), websocket.MessageText, []byte(`{"id":"`+strconv.Itoa(i)+`","parameters":{"block":true},"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
		}
	}()
	waitFor(t, func() bool { return f.running.Load() == inFlight })
	time.Sleep(200 * time.Millisecond)
	if n := f.calls.Load(); n != inFlight {
		t.Fatalf("service got %d messages while %d were in flight; the server kept reading", n, inFlight)
	}
	close(f.release)
	seen := map[any]bool{}
	for range sent {
		a := read(t, c)
		if a.code() != 0 || seen[a.id()] {
			t.Fatalf("answer %v", a.json)
		}
		seen[a.id()] = true
	}
	if m := f.maxRunning.Load(); m > inFlight {
		t.Errorf("%d messages ran at once, limit %d", m, inFlight)
	}
}

// TestNeverReadingClient: a client that sends and never reads fills its
// answers' path; the server stops reading it (memory bounded by
// MaxInFlight messages) and drops it after the write timeout.
func TestNeverReadingClient(t *testing.T) {
	f := newFake()
	f.outputBytes = 1 << 20 // answers far larger than the socket buffers
	const inFlight = 4
	ws, url := start(t, f, wsapi.Options{MaxInFlight: inFlight, WriteTimeout: 300 * time.Millisecond})
	c := dial(t, url, nil)
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c.Write(ctx, websocket.MessageText, []byte(`{"id":"`+strconv.Itoa(i)+`","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
			cancel()
			if err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	waitFor(t, func() bool { return wsapi.Conns(ws) == 0 && f.running.Load() == 0 })
	<-done
	// The server read at most what it could not answer plus what the
	// kernel buffered for it, far from unbounded.
	if n := f.calls.Load(); n > 1000 {
		t.Errorf("the service ran %d messages for a client that never read", n)
	}
	t.Logf("client wrote %d messages, service ran %d before the server dropped it", sent.Load(), f.calls.Load())
}

// TestDrain: draining answers the message in flight, refuses new ones
// with 503, closes with 1012 and refuses new connections.
func TestDrain(t *testing.T) {
	f := newFake()
	ws, url := start(t, f, wsapi.Options{})
	c := dial(t, url, nil)
	send(t, c, websocket.MessageText, []byte(`{"id":"inflight","parameters":{"block":true},"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
	waitFor(t, func() bool { return f.running.Load() == 1 })
	drained := make(chan error, 1)
	go func() { drained <- ws.Drain(ctx5(t)) }()
	waitFor(t, func() bool { return wsapi.Draining(ws) })
	send(t, c, websocket.MessageText, []byte(`{"id":"late","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
	if a := read(t, c); a.id() != "late" || a.code() != 503 {
		t.Fatalf("message during drain: %v", a.json)
	}
	_, resp, err := websocket.Dial(ctx5(t), url, &websocket.DialOptions{Subprotocols: []string{wire.WSProtocol}})
	if err == nil || resp.StatusCode != 503 {
		t.Errorf("new connection during drain: %v %v", err, resp)
	}
	close(f.release)
	if a := read(t, c); a.id() != "inflight" || a.code() != 0 {
		t.Fatalf("message in flight: %v", a.json)
	}
	if code := closeCode(t, c); code != websocket.StatusServiceRestart {
		t.Fatalf("close code %v, want 1012", code)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
}

// TestDrainTimeout: a message that never finishes is cut off when the
// drain's context ends.
func TestDrainTimeout(t *testing.T) {
	f := newFake()
	ws, url := start(t, f, wsapi.Options{})
	c := dial(t, url, nil)
	send(t, c, websocket.MessageText, []byte(`{"id":"stuck","parameters":{"block":true},"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
	waitFor(t, func() bool { return f.running.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ws.Drain(ctx); err == nil {
		t.Fatal("Drain with a stuck message returned nil")
	}
	waitFor(t, func() bool { return f.running.Load() == 0 && wsapi.Conns(ws) == 0 })
	_ = c
}

// TestExpiry: the connection closes with 1008 at x-helix-expires.
func TestExpiry(t *testing.T) {
	_, url := start(t, newFake(), wsapi.Options{})
	for _, tt := range []struct {
		name string
		at   time.Time
	}{{"already expired", time.Now().Add(-time.Minute)}, {"expires soon", time.Now().Add(time.Second)}} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, url, http.Header{wire.HeaderExpires: {strconv.FormatInt(tt.at.Unix(), 10)}})
			begin := time.Now()
			_, _, err := c.Read(ctx5(t))
			if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
				t.Fatalf("close %v (%v), want 1008", code, err)
			}
			if time.Since(begin) > 3*time.Second {
				t.Errorf("closed %v after connecting", time.Since(begin))
			}
		})
	}
}

// TestIdleTimeout: a client that answers no ping and sends nothing is
// closed; one that answers pings stays.
func TestIdleTimeout(t *testing.T) {
	_, url := start(t, newFake(), wsapi.Options{PingInterval: 50 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	alive := dial(t, url, nil)
	aliveCtx := alive.CloseRead(context.Background()) // answers pings
	silent := dial(t, url, nil)
	time.Sleep(time.Second) // no Read on silent: its pings go unanswered
	if code := closeCode(t, silent); code != websocket.StatusNormalClosure {
		t.Fatalf("silent client: close %v, want 1000", code)
	}
	if aliveCtx.Err() != nil {
		t.Fatal("the client answering pings was closed")
	}
}

// fakeLimiter answers Spend with verdict(n) and records the calls.
type fakeLimiter struct {
	mu      sync.Mutex
	verdict func(n uint32) (infer.Verdict, error)
	calls   []infer.StreamCredential
	ns      []uint32
}

func (l *fakeLimiter) Spend(_ context.Context, s infer.StreamCredential, n uint32) (infer.Verdict, error) {
	l.mu.Lock()
	l.calls = append(l.calls, s)
	l.ns = append(l.ns, n)
	v := l.verdict
	l.mu.Unlock()
	return v(n)
}

func (l *fakeLimiter) set(v func(uint32) (infer.Verdict, error)) {
	l.mu.Lock()
	l.verdict = v
	l.mu.Unlock()
}

var gateway = http.Header{
	wire.HeaderClient:     {"acme"},
	wire.HeaderModel:      {"echo"},
	wire.HeaderCredential: {"jti:abc"},
}

// TestLimiterVerdicts: each message spends one unit with the stream's
// credential; over the limit answers 429 and keeps the connection, an
// unanswered Spend 503, a revoked credential closes 1008.
func TestLimiterVerdicts(t *testing.T) {
	f := newFake()
	lim := &fakeLimiter{}
	agg := usage.NewAggregator(100)
	_, url := start(t, f, wsapi.Options{Limiter: lim, Usage: agg, RecheckInterval: time.Hour})
	c := dial(t, url, gateway)
	msg := func(id string) []byte {
		return []byte(`{"id":"` + id + `","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`)
	}
	allow := func(uint32) (infer.Verdict, error) { return infer.Verdict{Allowed: true}, nil }
	steps := []struct {
		verdict func(uint32) (infer.Verdict, error)
		code    int
		says    string
	}{
		{allow, 0, ""},
		{func(uint32) (infer.Verdict, error) {
			return infer.Verdict{OverLimit: true, Reason: "plan free allows 10 per minute"}, nil
		}, 429, "plan free allows 10 per minute"},
		{func(uint32) (infer.Verdict, error) { return infer.Verdict{}, errors.New("helix-authz unreachable") }, 503, "could not be checked"},
		{allow, 0, ""},
	}
	for i, s := range steps {
		lim.set(s.verdict)
		id := strconv.Itoa(i)
		send(t, c, websocket.MessageText, msg(id))
		a := read(t, c)
		if a.id() != id || a.code() != s.code || (s.says != "" && !strings.Contains(a.json["error"].(string), s.says)) {
			t.Fatalf("step %d: %v, want code %d with %q", i, a.json, s.code, s.says)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Errorf("service ran %d messages, want the 2 allowed", n)
	}
	lim.mu.Lock()
	want := infer.StreamCredential{Client: "acme", Model: "echo", Credential: "jti:abc"}
	for i, got := range lim.calls {
		if got != want || lim.ns[i] != 1 {
			t.Errorf("Spend %d: %+v n=%d, want %+v n=1", i, got, lim.ns[i], want)
		}
	}
	lim.mu.Unlock()
	// Usage: the two that ran; refusals are helix-authz's to count.
	var requests, errs uint64
	waitFor(t, func() bool {
		for _, r := range agg.Drain() {
			if r.GetClientId() != "acme" || r.GetModel() != "echo" {
				t.Errorf("usage row %v", r)
			}
			requests += r.GetRequests()
			errs += r.GetErrors()
		}
		return requests >= 2
	})
	if requests != 2 || errs != 0 {
		t.Errorf("usage counted %d requests, %d errors; want 2, 0", requests, errs)
	}

	lim.set(func(uint32) (infer.Verdict, error) {
		return infer.Verdict{Revoked: true, Reason: "credential revoked"}, nil
	})
	send(t, c, websocket.MessageText, msg("r"))
	if code := closeCode(t, c); code != websocket.StatusPolicyViolation {
		t.Fatalf("revoked: close %v, want 1008", code)
	}
}

// TestRecheck: an idle connection re-asks the limiter with n=0 and closes
// with 1008 once the credential is revoked; without x-helix-client
// nothing is asked.
func TestRecheck(t *testing.T) {
	lim := &fakeLimiter{}
	lim.set(func(uint32) (infer.Verdict, error) { return infer.Verdict{Allowed: true}, nil })
	_, url := start(t, newFake(), wsapi.Options{Limiter: lim, RecheckInterval: 100 * time.Millisecond})
	c := dial(t, url, gateway)
	anon := dial(t, url, nil)
	waitFor(t, func() bool { lim.mu.Lock(); defer lim.mu.Unlock(); return len(lim.calls) >= 2 })
	lim.set(func(n uint32) (infer.Verdict, error) {
		if n != 0 {
			t.Errorf("re-check spent %d", n)
		}
		return infer.Verdict{Revoked: true}, nil
	})
	begin := time.Now()
	if code := closeCode(t, c); code != websocket.StatusPolicyViolation {
		t.Fatalf("close %v, want 1008", code)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("closed %v after revocation, bound 100ms", d)
	}
	send(t, anon, websocket.MessageText, []byte(`{"id":"a","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
	if a := read(t, anon); a.code() != 0 {
		t.Errorf("uncounted connection: %v", a.json)
	}
	lim.mu.Lock()
	defer lim.mu.Unlock()
	for _, s := range lim.calls {
		if s.Client != "acme" {
			t.Errorf("Spend for %+v", s)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAbruptDisconnect: a client gone mid-message cancels the message's
// inference and frees the connection.
func TestAbruptDisconnect(t *testing.T) {
	f := newFake()
	ws, url := start(t, f, wsapi.Options{})
	c := dial(t, url, nil)
	for i := range 3 {
		send(t, c, websocket.MessageText, []byte(`{"id":"`+strconv.Itoa(i)+`","parameters":{"block":true},"inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
	}
	waitFor(t, func() bool { return f.running.Load() == 3 })
	_ = c.CloseNow()
	waitFor(t, func() bool { return f.running.Load() == 0 && wsapi.Conns(ws) == 0 })
}

// TestUsage: each message carrying the gateway's client is one request in
// the usage ledger, a failed one an error, as REST counts them.
func TestUsage(t *testing.T) {
	agg := usage.NewAggregator(100)
	_, url := start(t, newFake(), wsapi.Options{Usage: agg})
	c := dial(t, url, gateway)
	send(t, c, websocket.MessageText, []byte(`{"id":"ok","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
	send(t, c, websocket.MessageText, []byte(`{"id":"bad",`))
	read(t, c)
	read(t, c)
	anon := dial(t, url, nil) // no gateway: not counted
	send(t, anon, websocket.MessageText, []byte(`{"id":"ok","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
	read(t, anon)
	// A message is counted just after its answer is written.
	var requests, inferences, errs uint64
	waitFor(t, func() bool {
		for _, r := range agg.Drain() {
			if r.GetClientId() != "acme" || r.GetModel() != "echo" {
				t.Errorf("usage row %v", r)
			}
			requests, inferences, errs = requests+r.GetRequests(), inferences+r.GetInferences(), errs+r.GetErrors()
		}
		return requests >= 2
	})
	time.Sleep(50 * time.Millisecond) // the anonymous message, had it been counted
	for _, r := range agg.Drain() {
		t.Errorf("usage row %v", r)
	}
	if requests != 2 || inferences != 1 || errs != 1 {
		t.Errorf("counted %d requests, %d inferences, %d errors; want 2, 1, 1", requests, inferences, errs)
	}
}

// TestIDFreeOnceAnswered: an id may be sent again as soon as its answer is
// read (the id is released before the answer is written), for answers and
// for errors alike.
func TestIDFreeOnceAnswered(t *testing.T) {
	_, url := start(t, newFake(), wsapi.Options{})
	c := dial(t, url, nil)
	for i := range 300 {
		msg := `{"id":"same","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`
		if i%3 == 0 {
			msg = `{"id":"same","inputs":[{"name":"X","datatype":"NOPE","shape":[1],"data":[1]}]}`
		}
		send(t, c, websocket.MessageText, []byte(msg))
		a := read(t, c)
		if a.id() != "same" || (i%3 != 0 && a.code() != 0) {
			t.Fatalf("message %d: %v", i, a.json)
		}
		if code := a.code(); code == 400 && strings.Contains(fmt.Sprint(a.json["error"]), "in flight") {
			t.Fatalf("message %d: the id was still in flight after its answer: %v", i, a.json)
		}
	}
}
