// Command wssoak is make soak-ws: CONNS WebSocket connections (default
// 1,000) through Envoy's TLS listener to the sample model simple, each
// sending one message per second for DURATION (default 5 minutes), on the
// local stack (internal/stack: two workers, helix-authz, Envoy, ...).
// Goals: no error (every message answered, no connection closed or
// refused), and each process's resident memory after the warm-up flat:
// the last sample at most 10% above the first.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/coder/websocket"

	"github.com/helixflow/helixflow/extauthz/admin"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/wire"
)

// rssGrowth is the goal: memory after the warm-up grows at most this much.
const rssGrowth = 0.10

type options struct {
	root, binDir     string
	conns            int
	rate             float64 // messages per second per connection
	duration, warmup time.Duration
	sampleEvery      time.Duration
	clients          int
}

func main() {
	var o options
	fs := flag.NewFlagSet("wssoak", flag.ExitOnError)
	fs.StringVar(&o.root, "root", ".", "the repository (bin/, models/, deploy/local/)")
	fs.StringVar(&o.binDir, "bin-dir", "", "helix-authz, helix-xds and helix-worker (default ROOT/bin)")
	fs.IntVar(&o.conns, "conns", envInt("SOAK_WS_CONNS", 1000), "WebSocket connections (env SOAK_WS_CONNS)")
	fs.Float64Var(&o.rate, "rate", 1, "messages per second on each connection")
	fs.DurationVar(&o.duration, "duration", envDuration("SOAK_WS_DURATION", 5*time.Minute), "how long the load runs (env SOAK_WS_DURATION)")
	fs.DurationVar(&o.warmup, "warmup", time.Minute, "load before the first memory sample (the baseline)")
	fs.DurationVar(&o.sampleEvery, "sample-every", 30*time.Second, "memory sample interval after the warm-up")
	// The plans count per client: 1,000 messages/s from one standard
	// client (1,000/s) would be at its limit, so the load is spread.
	fs.IntVar(&o.clients, "clients", 10, "OAuth clients the connections share (plan standard)")
	_ = fs.Parse(os.Args[1:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := soak(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wssoak:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

func soak(ctx context.Context, o options) (bool, error) {
	root, err := filepath.Abs(o.root)
	if err != nil {
		return false, err
	}
	dir, err := os.MkdirTemp("", "helix-wssoak-")
	if err != nil {
		return false, err
	}
	if err := os.Chmod(dir, 0o711); err != nil { // Postgres runs as postgres under root
		return false, err
	}
	defer func() {
		if os.Getenv("KEEP_STATE") == "" {
			os.RemoveAll(dir)
		}
	}()
	st, err := helixstack.New(helixstack.Options{
		Root: root, Dir: dir, BinDir: o.binDir, EnvoyDiscardStdout: true,
		// Tokens outlive the soak: a connection closes (1008) when its
		// token expires, which is not what this measures.
		Args:   map[string][]string{helixstack.Authz: {"--token-lifetime=1h"}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return false, err
	}
	defer st.Close()
	logf("starting the stack in %s (logs in %s)", dir, st.LogDir())
	if err := st.Start(ctx); err != nil {
		return false, err
	}
	ac, err := admin.NewClient(st.AdminURL(), st.AdminToken, nil)
	if err != nil {
		return false, err
	}
	tokens := make([]string, o.clients)
	for i := range tokens {
		name, plan, scopes, models := fmt.Sprintf("wssoak-%d", i), "standard", []string{"models:infer", "models:read"}, []string{"*"}
		c, err := ac.CreateClient(ctx, admin.ClientRequest{Name: &name, Plan: &plan, Scopes: &scopes, Models: &models})
		if err != nil {
			return false, fmt.Errorf("create client: %w", err)
		}
		tok, err := st.Token(ctx, c.ClientID, c.ClientSecret)
		if err != nil {
			return false, err
		}
		tokens[i] = tok.AccessToken
	}
	if err := st.WaitServing(ctx, tokens[0]); err != nil {
		return false, err
	}
	pool, err := st.CAPool()
	if err != nil {
		return false, err
	}
	l := &load{url: "wss://" + st.GatewayAddr() + wire.RESTModelPath("simple", "") + wire.WSPathSuffix, tokens: tokens,
		httpc: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: o.conns, ForceAttemptHTTP2: false}},
		interval: time.Duration(float64(time.Second) / o.rate), errs: map[string]int{}}
	logf("opening %d connections to %s", o.conns, l.url)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	for i := range o.conns {
		wg.Go(func() { l.conn(loadCtx, i) })
		if i%50 == 49 {
			time.Sleep(50 * time.Millisecond) // not all 1,000 upgrades in one instant
		}
	}
	start := time.Now()
	procs := st.Procs()
	var rows [][]int // [sample][proc] RSS KiB
	var times []time.Duration
	next := o.warmup
	for {
		wait := time.Until(start.Add(next))
		if next > o.duration {
			wait = time.Until(start.Add(o.duration))
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(wait):
		}
		row := make([]int, len(procs))
		for i, p := range procs {
			row[i] = rssKiB(p.PID())
		}
		at := time.Since(start)
		rows, times = append(rows, row), append(times, at)
		logf("%v: %d connections open, %d answered, %d errors", at.Round(time.Second), l.open.Load(), l.answered.Load(), l.failed.Load())
		if at >= o.duration-time.Second {
			break
		}
		next += o.sampleEvery
	}
	stopLoad()
	wg.Wait()

	fmt.Println("\nRSS (MiB):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "process\t"
	for _, at := range times {
		header += at.Round(time.Second).String() + "\t"
	}
	fmt.Fprintln(tw, header+"growth\t")
	var missed []string
	for i, p := range procs {
		line := p.Name() + "\t"
		for _, row := range rows {
			line += fmt.Sprintf("%.1f\t", float64(row[i])/1024)
		}
		a, b := rows[0][i], rows[len(rows)-1][i]
		g := 0.0
		if a > 0 {
			g = float64(b)/float64(a) - 1
		}
		fmt.Fprintln(tw, line+fmt.Sprintf("%+.1f%%\t", 100*g))
		if g > rssGrowth {
			missed = append(missed, fmt.Sprintf("%s memory %.1f -> %.1f MiB (%+.0f%%)", p.Name(), float64(a)/1024, float64(b)/1024, 100*g))
		}
	}
	tw.Flush()
	fmt.Printf("(the first column is after %v of load: the warm-up the goal compares with)\n", times[0].Round(time.Second))
	sent, answered, failed := l.sent.Load(), l.answered.Load(), l.failed.Load()
	lat := l.latencies()
	fmt.Printf("\nsoak-ws: %d connections x %.1f message/s for %v: %d sent, %d answered, %d errors; latency p50 %v p99 %v max %v\n",
		o.conns, o.rate, times[len(times)-1].Round(time.Second), sent, answered, failed, lat[0], lat[1], lat[2])
	if failed > 0 {
		missed = append(missed, fmt.Sprintf("%d errors: %s", failed, l.errSummary()))
	}
	if len(missed) == 0 {
		fmt.Println("goals met: no errors, every process's memory within +10% of the warm-up")
		return true, nil
	}
	fmt.Println("goals missed:\n  " + strings.Join(missed, "\n  "))
	return false, nil
}

// load is the connections' shared state.
type load struct {
	url      string
	tokens   []string
	httpc    *http.Client
	interval time.Duration

	open, sent, answered, failed atomic.Int64
	mu                           sync.Mutex
	errs                         map[string]int
	lat                          []time.Duration
}

func (l *load) fail(kind string) {
	l.failed.Add(1)
	l.mu.Lock()
	l.errs[kind]++
	l.mu.Unlock()
}

// conn runs one connection until ctx ends: a message every interval (the
// first at a random offset), answers matched by id.
func (l *load) conn(ctx context.Context, i int) {
	tok := l.tokens[i%len(l.tokens)]
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ws, resp, err := websocket.Dial(dctx, l.url, &websocket.DialOptions{HTTPClient: l.httpc,
		Subprotocols: []string{wire.WSProtocol, wire.WSTokenProtocolPrefix + tok}})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			status := "no answer"
			if resp != nil {
				status = strconv.Itoa(resp.StatusCode)
			}
			l.fail("upgrade refused (" + status + "): " + short(err))
		}
		return
	}
	l.open.Add(1)
	defer l.open.Add(-1)
	ws.SetReadLimit(1 << 20)
	var mu sync.Mutex
	sentAt := map[string]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				if ctx.Err() == nil {
					l.fail("connection closed: " + short(err))
				}
				return
			}
			var a struct {
				ID    *string `json:"id"`
				Error string  `json:"error"`
				Code  int     `json:"code"`
			}
			if json.Unmarshal(b, &a) != nil || a.ID == nil {
				l.fail("an answer without an id")
				continue
			}
			mu.Lock()
			t0, ok := sentAt[*a.ID]
			delete(sentAt, *a.ID)
			mu.Unlock()
			switch {
			case !ok:
				l.fail("an answer to an id not in flight")
			case a.Error != "":
				l.fail(fmt.Sprintf("error answer %d: %s", a.Code, short(errors.New(a.Error))))
			default:
				l.answered.Add(1)
				l.mu.Lock()
				l.lat = append(l.lat, time.Since(t0))
				l.mu.Unlock()
			}
		}
	}()
	select { // spread the connections' messages over the interval
	case <-time.After(rand.N(l.interval)):
	case <-ctx.Done():
	}
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	for n := 0; ctx.Err() == nil; n++ {
		id := fmt.Sprintf("%d-%d", i, n)
		msg := fmt.Sprintf(`{"id":%q,"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[1,16],"data":[%s]},`+
			`{"name":"INPUT1","datatype":"INT32","shape":[1,16],"data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}`, id, seq(n))
		mu.Lock()
		sentAt[id] = time.Now()
		mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := ws.Write(wctx, websocket.MessageText, []byte(msg))
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				l.fail("write: " + short(err))
			}
			break
		}
		l.sent.Add(1)
		select {
		case <-tick.C:
		case <-ctx.Done():
		case <-done:
		}
		select {
		case <-done:
			return
		default:
		}
	}
	// The last second's answers are in flight: a normal close after a
	// moment for them.
	time.Sleep(500 * time.Millisecond)
	ws.Close(websocket.StatusNormalClosure, "soak over")
	<-done
}

func seq(n int) string {
	var b strings.Builder
	for k := range 16 {
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa((n + k) % 1000))
	}
	return b.String()
}

func (l *load) latencies() [3]time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lat) == 0 {
		return [3]time.Duration{}
	}
	sort.Slice(l.lat, func(a, b int) bool { return l.lat[a] < l.lat[b] })
	q := func(p float64) time.Duration {
		return l.lat[int(p*float64(len(l.lat)-1))].Round(100 * time.Microsecond)
	}
	return [3]time.Duration{q(0.5), q(0.99), q(1)}
}

func (l *load) errSummary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for k, n := range l.errs {
		parts = append(parts, fmt.Sprintf("%dx %s", n, k))
	}
	sort.Strings(parts)
	if len(parts) > 8 {
		parts = append(parts[:8], "...")
	}
	return strings.Join(parts, "; ")
}

func short(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// rssKiB is a process's resident memory (VmRSS), 0 when it is gone.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "wssoak: %s=%q is not a positive number\n", name, v)
			os.Exit(2)
		}
		return n
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "wssoak: %s=%q is not a duration (5m, 90s)\n", name, v)
			os.Exit(2)
		}
		return d
	}
	return def
}

func logf(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
