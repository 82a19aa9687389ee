package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/gpu"
	"github.com/helixflow/helixflow/workers/wsapi"
)

// syncBuffer collects the worker's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGPUMetrics starts the worker (in this process, with its real flags,
// registry and /metrics server) and scrapes /metrics. Without NVML it must
// say "0 GPUs" once, export helix_gpu_count 0 and no GPU series; with this
// machine's GPUs (if any) it must export them.
func TestGPUMetrics(t *testing.T) {
	// What this machine has, as the worker should find it.
	var machineGPUs []gpu.GPU
	if nv, err := gpu.Open(gpu.Options{}); err == nil {
		machineGPUs = nv.GPUs()
		_ = nv.Close()
	}
	if os.Getenv("HELIX_REQUIRE_GPU") == "1" && len(machineGPUs) == 0 {
		t.Fatal("HELIX_REQUIRE_GPU=1 but NVML finds no GPU")
	}
	tests := []struct {
		name     string
		args     []string
		wantGPUs int  // -1: no GPU metrics at all
		wantLog  bool // the "0 GPUs" line
	}{
		{"no NVML library", []string{"--nvml-library", filepath.Join(t.TempDir(), "libnvidia-ml.so.1")}, 0, true},
		{"GPU metrics off", []string{"--allow-gpu-metrics=false", "--nvml-library", filepath.Join(t.TempDir(), "libnvidia-ml.so.1")}, -1, true},
		{"this machine's NVML", nil, len(machineGPUs), len(machineGPUs) == 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, logs := scrapeWorker(t, tc.args)
			series := gpuSeries(body)
			if tc.wantGPUs < 0 {
				if len(series) != 0 {
					t.Fatalf("GPU metrics off, yet /metrics has %v", series)
				}
			} else {
				if got := series["helix_gpu_count"]; got != 1 || !strings.Contains(body, fmt.Sprintf("\nhelix_gpu_count %d\n", tc.wantGPUs)) {
					t.Errorf("want helix_gpu_count %d once; /metrics GPU series: %v", tc.wantGPUs, series)
				}
				// dcgm-exporter's and Triton's per-GPU series: one per GPU.
				for _, name := range []string{"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_XID_ERRORS", "nv_gpu_utilization", "nv_gpu_memory_used_bytes", "helix_gpu_up"} {
					if series[name] != tc.wantGPUs {
						t.Errorf("%s: %d series, want %d", name, series[name], tc.wantGPUs)
					}
				}
				if tc.wantGPUs == 0 && len(series) != 1 {
					t.Errorf("0 GPUs, yet /metrics has GPU series %v", series)
				}
			}
			if n := strings.Count(logs, `msg="0 GPUs"`); (n == 1) != tc.wantLog || n > 1 {
				t.Errorf(`%d "0 GPUs" log lines, want %v; log:\n%s`, n, tc.wantLog, logs)
			}
		})
	}
}

// gpuSeries counts /metrics samples per GPU metric name (DCGM_*, nv_gpu_*,
// nv_energy_*, helix_gpu_*).
func gpuSeries(body string) map[string]int {
	out := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		for _, p := range []string{"DCGM_", "nv_gpu_", "nv_energy_", "helix_gpu_"} {
			if strings.HasPrefix(name, p) {
				out[name]++
			}
		}
	}
	return out
}

// scrapeWorker runs the worker with args on an empty model repository,
// returns its /metrics page and its log, and stops it.
func scrapeWorker(t *testing.T, args []string) (body, logs string) {
	t.Helper()
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags(append([]string{
		"--model-repository", t.TempDir(),
		"--http-address", "127.0.0.1", "--http-port", "0",
		"--grpc-address", "127.0.0.1", "--grpc-port", "0",
		"--metrics-address", "127.0.0.1", "--metrics-port", strconv.Itoa(port),
		"--exit-timeout-secs", "2",
	}, args...))
	if err != nil {
		t.Fatal(err)
	}
	logBuf, stop := runWorker(t, o)
	defer stop()

	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := get(url)
		if err == nil {
			// Kubelet probes use the metrics port (the other listeners may
			// require client certificates); an empty repository is ready.
			for _, path := range []string{wire.RESTServerLive, wire.RESTServerReady} {
				if _, err := get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path)); err != nil {
					t.Errorf("GET %s on the metrics port: %v", path, err)
				}
			}
			return b, logBuf.String()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /metrics: %v\n%s", err, logBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runWorker runs the worker in this process until it has started (a
// missing ONNX Runtime fails the test under CI=true, skips it elsewhere)
// and returns its log and a stop function, also run when the test ends.
func runWorker(t *testing.T, o *options) (*syncBuffer, func()) {
	t.Helper()
	logBuf := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, o, slog.New(slog.NewTextHandler(logBuf, nil))) }()
	stopped := false // run returned already
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if stopped {
				return
			}
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("worker stopped with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("worker did not stop")
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logBuf.String(), "helix-worker started") {
		select {
		case err := <-errc:
			stopped = true
			if err != nil && strings.Contains(err.Error(), "onnxruntime") {
				testdeps.Missing(t, "the worker needs ONNX Runtime (make deps): %v\n%s", err, logBuf.String())
			}
			t.Fatalf("worker stopped: %v\n%s", err, logBuf.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker did not start\n%s", logBuf.String())
		}
	}
	return logBuf, stop
}

func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status)
	}
	return string(b), nil
}

func TestHealthHandler(t *testing.T) {
	for _, tc := range []struct {
		ok   bool
		want int
	}{{true, http.StatusOK}, {false, http.StatusServiceUnavailable}} {
		rec := httptest.NewRecorder()
		healthHandler(func() bool { return tc.ok }).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, wire.RESTServerReady, nil))
		if rec.Code != tc.want || rec.Body.Len() != 0 {
			t.Errorf("ok=%v: %d %q, want %d and no body", tc.ok, rec.Code, rec.Body.String(), tc.want)
		}
	}
}

// --id, when given, is the id the worker registers with; otherwise
// registration picks hostname:grpc-port, since the flag's default would be
// the same on every worker and each would replace the other's entry.
func TestWorkerID(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		server, id string
	}{
		{"not given", nil, "helix-worker", ""},
		{"given", []string{"--id", "helix-worker-1"}, "helix-worker-1", "helix-worker-1"},
		{"given as its default", []string{"--id=helix-worker"}, "helix-worker", "helix-worker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(append([]string{"--model-repository", "models"}, tc.args...))
			if err != nil {
				t.Fatal(err)
			}
			if o.serverID != tc.server || o.workerID != tc.id {
				t.Errorf("server name %q, worker id %q; want %q, %q", o.serverID, o.workerID, tc.server, tc.id)
			}
		})
	}
}

// --max-decompressed-bytes is the tighter limit of compressed HTTP bodies:
// it cannot be above --max-request-bytes.
func TestMaxDecompressedBytes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" = accepted
	}{
		{nil, ""},
		{[]string{"--max-decompressed-bytes=1048576"}, ""},
		{[]string{"--max-request-bytes=1048576", "--max-decompressed-bytes=2097152"}, "--max-decompressed-bytes 2097152"},
		{[]string{"--max-decompressed-bytes=-1"}, "--max-decompressed-bytes -1"},
	} {
		_, err := parseFlags(append([]string{"--model-repository", "models"}, tc.args...))
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// The --ws-* flags: defaults as docs/websocket.md says, bad values refused.
func TestWebSocketFlags(t *testing.T) {
	o, err := parseFlags([]string{"--model-repository", "models"})
	if err != nil {
		t.Fatal(err)
	}
	if o.wsMaxMessageBytes != 16<<20 || o.wsMaxInFlight != 64 || o.wsPingInterval != 20*time.Second ||
		o.wsIdleTimeout != 5*time.Minute || o.wsWriteTimeout != 10*time.Second {
		t.Errorf("defaults %d %d %v %v %v", o.wsMaxMessageBytes, o.wsMaxInFlight, o.wsPingInterval, o.wsIdleTimeout, o.wsWriteTimeout)
	}
	for _, tc := range []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"--ws-max-message-bytes=1048576", "--ws-max-in-flight=8", "--ws-ping-interval=5s", "--ws-idle-timeout=1m", "--ws-write-timeout=2s"}, ""},
		{[]string{"--ws-max-message-bytes=100"}, "--ws-max-message-bytes 100"},
		{[]string{"--ws-max-in-flight=0"}, "--ws-max-in-flight 0"},
		{[]string{"--ws-ping-interval=0s"}, "--ws-ping-interval"},
		{[]string{"--ws-idle-timeout=-1s"}, "--ws-idle-timeout"},
	} {
		_, err := parseFlags(append([]string{"--model-repository", "models"}, tc.args...))
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// The WebSocket drain actor waits for its interrupt and returns once the
// connections are drained (none here).
func TestWSDrainActor(t *testing.T) {
	ws := wsapi.New(nil, wsapi.Options{})
	execute, interrupt := wsDrainActor(ws, time.Second, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- execute() }()
	select {
	case <-done:
		t.Fatal("returned before the interrupt")
	case <-time.After(50 * time.Millisecond):
	}
	interrupt(nil)
	interrupt(nil) // twice is fine
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
