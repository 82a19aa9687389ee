package main

// The streams part (issue 16): inferences/s through the full chain (Envoy
// TLS, helix-authz, the worker) over WebSocket, over gRPC
// ModelStreamInfer and over unary gRPC ModelInfer, at equal concurrency:
// C callers each with one request in flight (unary: C callers on one
// HTTP/2 connection, as perf_analyzer; gRPC streaming: C streams on that
// connection; WebSocket: C connections, which HTTP/1.1 cannot share). The
// WebSocket messages are binary frames (a JSON header and the raw
// tensors), the form a client that cares for speed sends. Each stream
// message is counted against the plan by the worker (Limits.Spend), as a
// unary request is in Check. Goal: WebSocket >= 0.8x gRPC streaming.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/internal/samplemodel"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
)

// goalWSvsStream is issue 16's goal: WebSocket's rate over gRPC streaming's.
const goalWSvsStream = 0.8

// Stream modes, in the order they are reported.
const (
	modeUnary  = "unary gRPC"
	modeStream = "gRPC streaming"
	modeWS     = "WebSocket"
)

var streamModes = []string{modeUnary, modeStream, modeWS}

// streamsPoint is one concurrency's figures, by mode.
type streamsPoint struct {
	c      int
	rate   map[string]float64 // inferences/s answered without error
	errors map[string]int64
}

// ratio is a/b, 0 when b is.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// measureStreams runs every mode at each concurrency for 3 windows, the
// modes taking turns (the first rotating) as the perf_analyzer paths do.
func measureStreams(ctx context.Context, o *options, s *stack) ([]*streamsPoint, error) {
	tok, err := s.token(ctx)
	if err != nil {
		return nil, err
	}
	d := 3 * o.window
	var points []*streamsPoint
	for ci, c := range o.concurrencies {
		p := &streamsPoint{c: c, rate: map[string]float64{}, errors: map[string]int64{}}
		for k := range streamModes {
			mode := streamModes[(ci+k)%len(streamModes)]
			logf("streams: %s, concurrency %d, %v", mode, c, d)
			var ok, bad int64
			var err error
			switch mode {
			case modeUnary:
				ok, bad, err = runUnary(ctx, s, tok, c, d)
			case modeStream:
				ok, bad, err = runGRPCStreams(ctx, s, tok, c, d)
			case modeWS:
				ok, bad, err = runWebSockets(ctx, s, tok, c, d)
			}
			if err != nil {
				return nil, fmt.Errorf("streams: %s at concurrency %d: %w", mode, c, err)
			}
			p.rate[mode], p.errors[mode] = float64(ok)/d.Seconds(), bad
			logf("  %9.0f infer/s, %d errors", p.rate[mode], bad)
		}
		logf("streams: concurrency %d: %s", c, streamsRatios(p))
		points = append(points, p)
	}
	return points, nil
}

func streamsRatios(p *streamsPoint) string {
	ws, st, un := p.rate[modeWS], p.rate[modeStream], p.rate[modeUnary]
	return fmt.Sprintf("WebSocket/gRPC streaming %.2fx, WebSocket/unary %.2fx, gRPC streaming/unary %.2fx",
		ratio(ws, st), ratio(ws, un), ratio(st, un))
}

// streamsGoal judges WebSocket against gRPC streaming at the highest
// concurrency measured.
func streamsGoal(points []*streamsPoint) string {
	if len(points) == 0 {
		return "not measured: WebSocket >= 0.8x gRPC streaming"
	}
	p := points[len(points)-1]
	r := ratio(p.rate[modeWS], p.rate[modeStream])
	errs := p.errors[modeWS] + p.errors[modeStream]
	return fmt.Sprintf("%s: WebSocket >= %.1fx gRPC streaming through the full chain at concurrency %d: %.2fx (%s vs %s inferences/s, %d errors)",
		benchdoc.MetOrMissed(r >= goalWSvsStream && errs == 0), goalWSvsStream, p.c, r,
		benchdoc.Commas(p.rate[modeWS]), benchdoc.Commas(p.rate[modeStream]), errs)
}

// streamsReport is the report's table.
func streamsReport(b *strings.Builder, o *options, points []*streamsPoint) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("\n### WebSocket vs gRPC streaming vs unary gRPC (full chain, model simple)\n\n")
	w("| concurrency | unary gRPC (infer/s) | gRPC streaming | WebSocket | WebSocket / gRPC streaming | WebSocket / unary | errors |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, p := range points {
		w("| %d | %s | %s | %s | %.2fx | %.2fx | %d |\n", p.c, benchdoc.Commas(p.rate[modeUnary]), benchdoc.Commas(p.rate[modeStream]),
			benchdoc.Commas(p.rate[modeWS]), ratio(p.rate[modeWS], p.rate[modeStream]), ratio(p.rate[modeWS], p.rate[modeUnary]),
			p.errors[modeUnary]+p.errors[modeStream]+p.errors[modeWS])
	}
	w("\nC callers, each with one request in flight, for %v per mode: unary on one HTTP/2 connection, gRPC streaming as C ModelStreamInfer streams on it, WebSocket as C connections (binary frames). Every stream message is counted against the plan by the worker (helix-authz's Limits.Spend), as Check counts a unary request.\n", 3*o.window)
}

// closedLoop runs c callers until d passes; each call returns whether it
// was answered without error, or an error that ends the run.
func closedLoop(ctx context.Context, c int, d time.Duration, setup func(ctx context.Context, i int) (func() (bool, error), func(), error)) (ok, bad int64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	calls := make([]func() (bool, error), c)
	closers := make([]func(), c)
	for i := range c {
		if calls[i], closers[i], err = setup(ctx, i); err != nil {
			for _, cl := range closers[:i] {
				cl()
			}
			return 0, 0, err
		}
	}
	defer func() {
		for _, cl := range closers {
			cl()
		}
	}()
	var nOK, nBad atomic.Int64
	var first error
	var once sync.Once
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range c {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				good, err := calls[i]()
				if err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				if good {
					nOK.Add(1)
				} else {
					nBad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return nOK.Load(), nBad.Load(), first
}

func authCtx(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func runUnary(ctx context.Context, s *stack, tok string, c int, d time.Duration) (int64, int64, error) {
	cl := inference.NewGRPCInferenceServiceClient(s.fullConn)
	req := samplemodel.InferRequest()
	return closedLoop(ctx, c, d, func(ctx context.Context, _ int) (func() (bool, error), func(), error) {
		actx := authCtx(ctx, tok)
		return func() (bool, error) {
			_, err := cl.ModelInfer(actx, req)
			return err == nil, nil
		}, func() {}, nil
	})
}

func runGRPCStreams(ctx context.Context, s *stack, tok string, c int, d time.Duration) (int64, int64, error) {
	cl := inference.NewGRPCInferenceServiceClient(s.fullConn)
	req := samplemodel.InferRequest()
	return closedLoop(ctx, c, d, func(ctx context.Context, _ int) (func() (bool, error), func(), error) {
		sctx, cancel := context.WithCancel(authCtx(ctx, tok))
		st, err := cl.ModelStreamInfer(sctx)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		return func() (bool, error) {
			if err := st.Send(req); err != nil {
				return false, fmt.Errorf("stream send: %w", err)
			}
			resp, err := st.Recv()
			if err != nil {
				return false, fmt.Errorf("stream receive: %w", err)
			}
			return resp.GetErrorMessage() == "", nil
		}, func() { _ = st.CloseSend(); cancel() }, nil
	})
}

// wsFrame is the sample request in the binary form: header length, the
// JSON header with binary_data_size per input, the raw tensors; the
// outputs are asked as binary data too.
func wsFrame(id int) []byte {
	req := samplemodel.InferRequest()
	type in struct {
		Name       string         `json:"name"`
		Datatype   string         `json:"datatype"`
		Shape      []int64        `json:"shape"`
		Parameters map[string]int `json:"parameters"`
	}
	h := struct {
		ID         string         `json:"id"`
		Inputs     []in           `json:"inputs"`
		Parameters map[string]any `json:"parameters"`
	}{ID: fmt.Sprint(id), Parameters: map[string]any{"binary_data_output": true}}
	var raw []byte
	for i, t := range req.Inputs {
		h.Inputs = append(h.Inputs, in{t.Name, t.Datatype, t.Shape, map[string]int{"binary_data_size": len(req.RawInputContents[i])}})
		raw = append(raw, req.RawInputContents[i]...)
	}
	hb, _ := json.Marshal(h)
	frame := binary.LittleEndian.AppendUint32(nil, uint32(len(hb)))
	return append(append(frame, hb...), raw...)
}

func runWebSockets(ctx context.Context, s *stack, tok string, c int, d time.Duration) (int64, int64, error) {
	url := "wss://" + s.fullAddr + wire.RESTModelPath(samplemodel.Name, "") + wire.WSPathSuffix
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: c}}
	var firstErr sync.Once
	return closedLoop(ctx, c, d, func(ctx context.Context, i int) (func() (bool, error), func(), error) {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		ws, resp, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{wire.WSProtocol},
			HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
		if err != nil {
			if resp != nil {
				return nil, nil, fmt.Errorf("upgrade: HTTP %d: %w", resp.StatusCode, err)
			}
			return nil, nil, fmt.Errorf("upgrade: %w", err)
		}
		n := 0
		return func() (bool, error) {
			// A fresh id per message, as a client with several in flight
			// needs (the answer may come before the worker forgets the id).
			n++
			if err := ws.Write(ctx, websocket.MessageBinary, wsFrame(i<<32|n)); err != nil {
				return false, fmt.Errorf("websocket write: %w", err)
			}
			typ, b, err := ws.Read(ctx)
			if err != nil {
				return false, fmt.Errorf("websocket read: %w", err)
			}
			// Binary: an answer (errors come as text frames).
			if typ != websocket.MessageBinary {
				firstErr.Do(func() { logf("  WebSocket: the first error answer: %.300s", b) })
				return false, nil
			}
			return len(b) > 4, nil
		}, func() { ws.CloseNow() }, nil
	})
}
