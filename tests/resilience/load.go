package main

// The load generator: open loop at a fixed rate (a request is sent when
// its time comes, whether or not earlier ones have answered, so a stall
// shows as failures and latency rather than as a slower client), over
// many connections through Envoy: gRPC ModelInfer (KServe v2) on most,
// REST on the rest, each connection with one of several OAuth clients'
// tokens. Written here rather than run with perf_analyzer: perf_analyzer
// is closed-loop per concurrency slot, holds one token and cannot spread
// 1,000 connections over several clients and two protocols at a rate
// that ignores how fast the server answers.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/samplemodel"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
)

// model is the sample model every request asks for.
const model = samplemodel.Name

// requestTimeout bounds one request; a request still unanswered then is
// a failure.
const requestTimeout = 5 * time.Second

// maxInFlight bounds the goroutines of the open loop; a request due while
// it is reached is counted as failed ("overload") instead of sent.
const maxInFlight = 20000

// conn is one connection to Envoy: a gRPC ClientConn or an HTTP/2
// transport of its own, and whose token its requests carry.
type conn struct {
	grpc   inference.GRPCInferenceServiceClient
	cc     *grpc.ClientConn
	rest   *http.Client
	client int // index in loadConfig.Tokens
}

// tokens are the OAuth clients' current access tokens, replaced as they
// are refreshed (env.refreshTokens) while the load reads them.
type tokens []atomic.Pointer[string]

func (t tokens) get(i int) string { return *t[i].Load() }

// loadConfig says where and how to send.
type loadConfig struct {
	Gateway string // host:port of Envoy's listener
	CAPool  *x509.CertPool
	Tokens  tokens // one per OAuth client; connection i uses Tokens[i%len]
	Conns   int    // connections in all
	// RESTEvery: one connection in RESTEvery speaks REST (0: none).
	RESTEvery int
}

// load sends requests over its connections and counts the outcomes in
// one-second buckets.
type load struct {
	conns    []*conn
	tokens   tokens
	restURL  string
	request  *inference.ModelInferRequest
	restBody []byte

	start    time.Time
	inFlight atomic.Int64
	wg       sync.WaitGroup

	mu      sync.Mutex
	buckets []bucket       // by second since start
	errs    map[string]int // failure kinds, for the report
	fails   []failure      // every failure, in the order recorded
	// keepSamples: every request's send time and latency are kept in
	// samples (the upgrade mode's per-step p99).
	keepSamples bool
	samples     []reqSample
}

// reqSample is one request: when it was sent, how long until its answer
// (or its failure), and whether it failed.
type reqSample struct {
	at     time.Time
	took   time.Duration
	failed bool
}

type failure struct {
	at   time.Time // when the request was sent
	conn int
}

type bucket struct{ sent, failed int }

func newLoad(cfg loadConfig) (*load, error) {
	tc := &tls.Config{RootCAs: cfg.CAPool, MinVersion: tls.VersionTLS12}
	l := &load{restURL: "https://" + cfg.Gateway + wire.RESTModelPath(model, "", "infer"), request: samplemodel.InferRequest(),
		restBody: samplemodel.RESTBody(), errs: map[string]int{}, tokens: cfg.Tokens}
	for i := range cfg.Conns {
		c := &conn{client: i % len(cfg.Tokens)}
		if cfg.RESTEvery > 0 && i%cfg.RESTEvery == cfg.RESTEvery-1 {
			// A transport of its own: one HTTP/2 connection.
			c.rest = &http.Client{Timeout: requestTimeout, Transport: &http.Transport{
				TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 1}}
		} else {
			cc, err := grpc.NewClient(cfg.Gateway, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
			if err != nil {
				l.close()
				return nil, err
			}
			c.cc, c.grpc = cc, inference.NewGRPCInferenceServiceClient(cc)
		}
		l.conns = append(l.conns, c)
	}
	return l, nil
}

// close closes every connection.
func (l *load) close() {
	for _, c := range l.conns {
		if c.cc != nil {
			_ = c.cc.Close()
		}
		if c.rest != nil {
			c.rest.CloseIdleConnections()
		}
	}
}

// connect opens every connection (one request each, answered or not), so
// that the measured run starts with all of them established.
func (l *load) connect(ctx context.Context) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range l.conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = l.send(ctx, i)
		}()
	}
	wg.Wait()
}

// run sends rate requests per second, round robin over the connections,
// until ctx ends, then waits for the answers. Call it once.
func (l *load) run(ctx context.Context, rate float64) {
	l.start = time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	next := 0
	for sent := 0; ; {
		select {
		case <-ctx.Done():
			l.wg.Wait()
			return
		case now := <-tick.C:
			due := int(rate * now.Sub(l.start).Seconds())
			for ; sent < due; sent++ {
				i := next
				next = (next + 1) % len(l.conns)
				at := time.Now()
				if l.inFlight.Load() >= maxInFlight {
					l.record(at, i, fmt.Errorf("overload: %d requests in flight", maxInFlight))
					continue
				}
				l.inFlight.Add(1)
				l.wg.Add(1)
				go func() {
					defer l.wg.Done()
					defer l.inFlight.Add(-1)
					rctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
					defer cancel()
					l.record(at, i, l.send(rctx, i))
				}()
			}
		}
	}
}

// closedLoop runs workers goroutines that each send the next request as
// soon as the last answered, for d: the capacity measurement.
func (l *load) closedLoop(ctx context.Context, workers int, d time.Duration) {
	l.start = time.Now()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += workers {
				at := time.Now()
				rctx, rcancel := context.WithTimeout(context.Background(), requestTimeout)
				err := l.send(rctx, i%len(l.conns))
				rcancel()
				if ctx.Err() == nil {
					l.record(at, i%len(l.conns), err)
				}
			}
		}()
	}
	wg.Wait()
}

// send makes one inference on connection i.
func (l *load) send(ctx context.Context, i int) error {
	c := l.conns[i]
	if c.rest == nil {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+l.tokens.get(c.client))
		resp, err := c.grpc.ModelInfer(ctx, l.request)
		if err != nil {
			return err
		}
		if len(resp.GetRawOutputContents()) != 2 {
			return fmt.Errorf("grpc: %d outputs", len(resp.GetRawOutputContents()))
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.restURL, bytes.NewReader(l.restBody))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+l.tokens.get(c.client))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.rest.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"OUTPUT0"`)) {
		return fmt.Errorf("rest: HTTP %d %.80s", resp.StatusCode, body)
	}
	return nil
}

func (l *load) record(at time.Time, conn int, err error) {
	took := time.Since(at)
	sec := int(at.Sub(l.start) / time.Second)
	if sec < 0 {
		sec = 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.buckets) <= sec {
		l.buckets = append(l.buckets, bucket{})
	}
	l.buckets[sec].sent++
	if l.keepSamples {
		l.samples = append(l.samples, reqSample{at, took, err != nil})
	}
	if err != nil {
		l.buckets[sec].failed++
		l.errs[errKind(err)]++
		l.fails = append(l.fails, failure{at, conn})
	}
}

// errKind shortens an error to its kind: a gRPC code and message start,
// or the text up to the first colon.
func errKind(err error) string {
	if s, ok := status.FromError(err); ok {
		msg := s.Message()
		if len(msg) > 60 {
			msg = msg[:60]
		}
		return s.Code().String() + ": " + msg
	}
	msg := err.Error()
	if len(msg) > 70 {
		msg = msg[:70]
	}
	return msg
}

// window counts the requests sent in [from, to), to the second.
func (l *load) window(from, to time.Time) (sent, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, b := int(from.Sub(l.start)/time.Second), int(to.Sub(l.start)/time.Second)
	for s := max(a, 0); s < b && s < len(l.buckets); s++ {
		sent += l.buckets[s].sent
		failed += l.buckets[s].failed
	}
	return sent, failed
}

// failures are the failed requests sent in [from, to): how many, the
// last one's send time, and on how many connections.
func (l *load) failures(from, to time.Time) (n int, last time.Time, conns int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[int]bool{}
	for _, f := range l.fails {
		if f.at.Before(from) || !f.at.Before(to) {
			continue
		}
		n++
		if f.at.After(last) {
			last = f.at
		}
		seen[f.conn] = true
	}
	return n, last, len(seen)
}

// takeErrors returns the failure kinds counted since the last call,
// most frequent first, and forgets them.
func (l *load) takeErrors() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	type kv struct {
		k string
		n int
	}
	var kinds []kv
	for k, n := range l.errs {
		kinds = append(kinds, kv{k, n})
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i].n > kinds[j].n })
	var parts []string
	for i, e := range kinds {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("%d more kinds", len(kinds)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%d× %s", e.n, e.k))
	}
	clear(l.errs)
	return strings.Join(parts, "; ")
}

// totals are every request's outcome so far.
func (l *load) totals() (sent, failed int) {
	return l.window(l.start, time.Now().Add(time.Hour))
}
