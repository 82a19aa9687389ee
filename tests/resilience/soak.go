package main

// The soak test: the capacity measured briefly (closed loop), then an
// open-loop load at half of it over 1,000 connections for SOAK_DURATION
// (10 minutes), sampling every process: resident memory (RSS of its
// process group, from /proc), open file descriptors (/proc/PID/fd) and,
// for the Go processes, goroutines (go_goroutines on /metrics).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/supervise"
)

// Goals: after the first sample (warm-up), memory grows at most 10%, and
// goroutines and file descriptors not at all (a few, for what a busy
// moment holds, are allowed: growthSlack).
const (
	rssGrowth   = 0.10
	growthSlack = 0.05 // and 5 more
)

// sample is one process's figures at one time.
type sample struct {
	rssKiB, fds int
	goroutines  int // -1: not a Go process or no metric
	// Envoy's heap (/memory), to tell memory in use from memory its
	// allocator keeps: -1 for the other processes.
	allocatedKiB, heapKiB int
}

func soak(ctx context.Context, o *options) error {
	e, err := startEnv(ctx, o, 0)
	if err != nil {
		return err
	}
	defer e.close()

	// Capacity: closed loop, 128 callers over 128 connections.
	capLoad, err := newLoad(loadConfig{Gateway: e.st.GatewayAddr(), CAPool: e.pool, Tokens: e.tokens, Conns: 128, RESTEvery: 8})
	if err != nil {
		return err
	}
	capLoad.connect(ctx)
	logf("measuring capacity for %v (closed loop, 128 callers)", o.capacityFor)
	capLoad.closedLoop(ctx, 128, o.capacityFor)
	sent, failed := capLoad.totals()
	capLoad.close()
	capacity := float64(sent-failed) / o.capacityFor.Seconds()
	rate := capacity / 2
	logf("capacity %.0f requests/s (%d sent, %d failed); the soak runs at %.0f/s", capacity, sent, failed, rate)
	if failed > 0 {
		logf("capacity run failures: %s", capLoad.takeErrors())
	}

	l, err := newLoad(loadConfig{Gateway: e.st.GatewayAddr(), CAPool: e.pool, Tokens: e.tokens, Conns: o.soakConns, RESTEvery: 10})
	if err != nil {
		return err
	}
	defer l.close()
	logf("opening %d connections", o.soakConns)
	l.connect(ctx)
	interval := min(time.Minute, o.soakDuration/5)
	loadCtx, stopLoad := context.WithTimeout(ctx, o.soakDuration)
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); l.run(loadCtx, rate) }()
	logf("soak: %.0f requests/s over %d connections (1 in 10 REST) for %v, a sample every %v", rate, o.soakConns, o.soakDuration, interval)

	procs := e.st.Procs()
	metrics := goMetrics(e.st)
	var rows [][]sample // [sample][proc]
	var times []time.Duration
	start := time.Now()
	for tick := time.NewTicker(interval); ; {
		done := false
		select {
		case <-tick.C:
		case <-loadDone:
			done = true
		}
		if done && len(times) > 0 && time.Since(start)-times[len(times)-1] < interval/2 {
			break // the last tick's sample is the end's
		}
		row := make([]sample, len(procs))
		for i, p := range procs {
			row[i] = measure(ctx, p.PID(), metrics[p.Name()])
			row[i].allocatedKiB, row[i].heapKiB = -1, -1
			if p.Name() == helixstack.Envoy {
				row[i].allocatedKiB, row[i].heapKiB = envoyHeap(ctx, e.st)
			}
		}
		rows, times = append(rows, row), append(times, time.Since(start))
		s, f := l.totals()
		logf("%v: %d requests, %d failed", time.Since(start).Round(time.Second), s, f)
		if done || ctx.Err() != nil {
			tick.Stop()
			break
		}
	}
	<-loadDone
	sent, failed = l.totals()
	errs := l.takeErrors()

	fmt.Println()
	for _, t := range []struct {
		title string
		cell  func(sample) string
	}{
		{"RSS (MiB, the process and its children)", func(s sample) string { return fmt.Sprintf("%.1f", float64(s.rssKiB)/1024) }},
		{"open file descriptors", func(s sample) string { return strconv.Itoa(s.fds) }},
		{"goroutines (go_goroutines of the Go processes)", func(s sample) string {
			if s.goroutines < 0 {
				return "-"
			}
			return strconv.Itoa(s.goroutines)
		}},
		{"Envoy's heap, allocated / held by its allocator (MiB, /memory)", func(s sample) string {
			if s.allocatedKiB < 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f/%.1f", float64(s.allocatedKiB)/1024, float64(s.heapKiB)/1024)
		}},
	} {
		fmt.Println(t.title + ":")
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		header := "process\t"
		for _, at := range times {
			header += at.Round(time.Second).String() + "\t"
		}
		fmt.Fprintln(tw, header)
		for i, p := range procs {
			line, measured := p.Name()+"\t", false
			for _, row := range rows {
				c := t.cell(row[i])
				line, measured = line+c+"\t", measured || c != "-"
			}
			if measured { // a row of "-" says only that the figure is not this process's
				fmt.Fprintln(tw, line)
			}
		}
		tw.Flush()
		fmt.Println()
	}
	fmt.Printf("(the first column is after %v of load: the warm-up the goals compare with)\n", times[0].Round(time.Second))

	// Verdicts against the first sample.
	var missed []string
	first, last := rows[0], rows[len(rows)-1]
	for i, p := range procs {
		a, b := first[i], last[i]
		if float64(b.rssKiB) > float64(a.rssKiB)*(1+rssGrowth) {
			missed = append(missed, fmt.Sprintf("%s memory %.1f -> %.1f MiB (+%.0f%%)", p.Name(),
				float64(a.rssKiB)/1024, float64(b.rssKiB)/1024, 100*(float64(b.rssKiB)/float64(a.rssKiB)-1)))
		}
		if grew(a.fds, b.fds) {
			missed = append(missed, fmt.Sprintf("%s file descriptors %d -> %d", p.Name(), a.fds, b.fds))
		}
		if a.goroutines >= 0 && b.goroutines >= 0 && grew(a.goroutines, b.goroutines) {
			missed = append(missed, fmt.Sprintf("%s goroutines %d -> %d", p.Name(), a.goroutines, b.goroutines))
		}
	}
	if failed > 0 {
		missed = append(missed, fmt.Sprintf("%d of %d requests failed: %s", failed, sent, errs))
	}
	fmt.Printf("\nsoak: %v at %.0f requests/s (half of %.0f) over %d connections: %d requests, %d failed; the machine: %s\n",
		times[len(times)-1].Round(time.Second), rate, capacity, o.soakConns, sent, failed, machine())
	if len(missed) == 0 {
		fmt.Println("goals met: memory within +10% of the warm-up, no growth in goroutines or file descriptors, no errors")
	} else {
		fmt.Println("goals missed:\n  " + strings.Join(missed, "\n  "))
	}
	return nil
}

// grew: more than the slack above the warm-up figure.
func grew(before, after int) bool {
	return float64(after) > float64(before)*(1+growthSlack)+5
}

// goMetrics are the /metrics URLs of the stack's Go processes.
func goMetrics(st *helixstack.Stack) map[string]string {
	p := st.Ports
	m := map[string]string{
		helixstack.Authz: "http://" + helixstack.Addr(p.AuthzMetrics) + "/metrics",
		helixstack.XDS:   st.XDSStatusURL() + "/metrics",
	}
	for i, w := range st.Workers() {
		m[w.Name] = "http://" + helixstack.Addr(p.Workers[i].Metrics) + "/metrics"
	}
	return m
}

// measure sums RSS and open files over pid and the processes below it
// (Postgres's backends; Envoy has none) and reads goroutines from
// metricsURL.
func measure(ctx context.Context, pid int, metricsURL string) sample {
	s := sample{goroutines: -1}
	for _, p := range append(supervise.Descendants(pid), pid) {
		d := "/proc/" + strconv.Itoa(p)
		s.rssKiB += rssKiB(d)
		if fds, err := os.ReadDir(filepath.Join(d, "fd")); err == nil {
			s.fds += len(fds)
		}
	}
	if metricsURL != "" {
		s.goroutines = goroutines(ctx, metricsURL)
	}
	return s
}

func rssKiB(dir string) int {
	f, err := os.Open(filepath.Join(dir, "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// goroutines reads go_goroutines, or -1.
func goroutines(ctx context.Context, url string) int {
	for _, line := range strings.Split(scrape(ctx, url), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int(n)
			}
		}
	}
	return -1
}

// scrape returns a /metrics page ("" when it does not answer in 5 s).
func scrape(ctx context.Context, url string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return string(b)
}

// envoyHeap reads Envoy's /memory: bytes in use and the heap its
// allocator holds (KiB each), or -1s.
func envoyHeap(ctx context.Context, st *helixstack.Stack) (allocatedKiB, heapKiB int) {
	body, err := st.EnvoyAdmin(ctx, "/memory")
	if err != nil {
		return -1, -1
	}
	var m struct {
		Allocated string `json:"allocated"`
		HeapSize  string `json:"heap_size"`
	}
	if json.Unmarshal([]byte(body), &m) != nil {
		return -1, -1
	}
	a, _ := strconv.Atoi(m.Allocated)
	h, _ := strconv.Atoi(m.HeapSize)
	return a / 1024, h / 1024
}
