package e2e

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/samplemodel"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/xds/translate"
)

// Limits the resilience test asserts. The figures themselves are logged.
const (
	// routableWithin bounds registration -> first request routed to the new
	// worker. The goal is 1 s; the bound is loose for a busy 2-core machine.
	routableWithin = 3 * time.Second
	// maxKillFailures bounds the client-visible failures when a worker is
	// killed under load: requests in flight on it are retried on another
	// worker (retry_on reset/connect-failure/unavailable), within a retry
	// budget of 20% of active requests but at least 3 concurrent retries;
	// with 8 clients a few may exceed it.
	maxKillFailures = 5
	loadClients     = 8
	// loadRate paces the load (requests/s, all clients together) below
	// the gateway's per-source limit (source_limit, default 1,000/s, which
	// e2e keeps): every client is 127.0.0.1, and a closed loop on a quiet
	// machine outran it, failing requests with local_rate_limited that no
	// rotation or kill caused.
	loadRate = 400
)

// TestResilience runs workers that register themselves (helix-worker
// --xds-address, mTLS), adds one with a new model, kills one under load,
// and restarts helix-xds under load.
func TestResilience(t *testing.T) {
	parent := t // workers started in a subtest outlive it
	s := startStack(t, stackOptions{selfRegister: true})
	workerA := s.workers[0]
	all, mlpOnly := s.clients["all"], s.clients["mlp-only"]
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
	infer := inference.NewGRPCInferenceServiceClient(s.grpcConn(t))

	t.Run("a worker registered by its --xds-address flag is routed to", func(t *testing.T) {
		waitFor(t, "first inference through Envoy", 30*time.Second, workerA.proc, func(ctx context.Context) error {
			resp, err := infer.ModelInfer(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+all.token), samplemodel.InferRequest())
			if err != nil {
				return err
			}
			checkGRPCOutputs(t, resp)
			return nil
		})
		if n := len(workerA.registrations(t)); n != 1 {
			t.Fatalf("%s logged %d registrations, want 1", workerA.name, n)
		}
		s.waitHealthy(t, translate.GRPCCluster(sampleModel), workerA)
	})

	var workerB *worker
	t.Run("a worker with a new model is routable within 1s of registering", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// Before: no worker has mlp, so Envoy sends it to the default pool,
		// whose only worker does not serve it.
		if code, body, err := s.restPost(ctx, https, "mlp", mlpRESTBody(), all.token, nil); err != nil || code == http.StatusOK {
			t.Fatalf("mlp before any worker has it = %d %s (%v), want an error", code, body, err)
		}
		workerB = s.startWorker(parent, workerSpec{
			name: "helix-worker-mlp", repo: modelRepository(parent, "mlp"), models: []string{"mlp"}, register: true,
		})
		// Poll from the start: the worker registers once its model is
		// loaded, and the first 200 is the moment Envoy routes to it.
		var routedAt time.Time
		for {
			code, body, err := s.restPost(ctx, https, "mlp", mlpRESTBody(), all.token, nil)
			if err == nil && code == http.StatusOK {
				routedAt = time.Now()
				checkMLPOutputs(t, body)
				break
			}
			if ctx.Err() != nil || workerB.proc.Exited() {
				t.Fatalf("mlp never routed (last: %d %s %v):\n%s", code, body, err, workerB.proc.Tail(100))
			}
			time.Sleep(5 * time.Millisecond)
		}
		regAt := workerB.waitRegistered(t, 0, 5*time.Second)
		took := routedAt.Sub(regAt)
		t.Logf("registration (%s log) to first request routed to it: %v", workerB.name, took.Round(time.Millisecond))
		if took > routableWithin {
			t.Fatalf("routable %v after registering, want < %v (goal 1s)", took, routableWithin)
		}
	})

	t.Run("forged x-helix-model does not change gRPC routing", func(t *testing.T) {
		if workerB == nil {
			t.Fatal("the mlp worker did not start (see the subtest above)")
		}
		// mlp-only asks for mlp and claims simple: routed by the forged
		// header, it would land on the simple-only worker (NOT_FOUND).
		ctx := metadata.AppendToOutgoingContext(withToken(t, mlpOnly.token), wire.HeaderModel, sampleModel)
		resp, err := infer.ModelInfer(ctx, mlpRequest())
		if err != nil {
			t.Fatalf("ModelInfer mlp with x-helix-model: %s = %v", sampleModel, err)
		}
		if resp.GetModelName() != "mlp" || len(resp.GetRawOutputContents()) != 1 || len(resp.GetRawOutputContents()[0]) != 40 {
			t.Fatalf("response = %v", resp)
		}
	})

	t.Run("a stream naming its model reaches that model's pool", func(t *testing.T) {
		if workerB == nil {
			t.Fatal("the mlp worker did not start (see the subtest above)")
		}
		// mlp-only may not open a stream that could touch any model, but
		// may open one for mlp; it then lands on the mlp worker every time
		// (the default pool would send half of them to the simple-only
		// one), and a message for another model on it is refused.
		ctx := metadata.AppendToOutgoingContext(withToken(t, mlpOnly.token), wire.HeaderStreamModel, "mlp")
		stream, err := infer.ModelStreamInfer(ctx)
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		for i := range n {
			req := mlpRequest()
			req.Id = fmt.Sprintf("r%d", i)
			if err := stream.Send(req); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		other := samplemodel.InferRequest()
		other.Id = "other"
		if err := stream.Send(other); err != nil {
			t.Fatalf("send the other model's request: %v", err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		ok := 0
		for range n + 1 {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("stream after %d answers: %v", ok, err)
			}
			r := resp.GetInferResponse()
			if r.GetId() == "other" {
				if !strings.Contains(resp.GetErrorMessage(), "the gateway authorized model 'mlp'") {
					t.Fatalf("a %s request on an mlp stream: %q, want refused", sampleModel, resp.GetErrorMessage())
				}
				continue
			}
			if resp.GetErrorMessage() != "" || r.GetModelName() != "mlp" || len(r.GetRawOutputContents()) != 1 {
				t.Fatalf("answer %s: %q %v", r.GetId(), resp.GetErrorMessage(), r)
			}
			ok++
		}
		if ok != n {
			t.Fatalf("%d of %d mlp requests answered", ok, n)
		}

		// Without naming the model, mlp-only cannot open a stream.
		denied, err := infer.ModelStreamInfer(withToken(t, mlpOnly.token))
		if err == nil {
			_, err = denied.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a stream without %s for mlp-only: %v, want PERMISSION_DENIED", wire.HeaderStreamModel, err)
		}
	})

	t.Run("a worker killed under load", func(t *testing.T) {
		workerC := s.startWorker(parent, workerSpec{
			name: "helix-worker-2", repo: modelRepository(parent, sampleModel), models: []string{sampleModel}, register: true,
		})
		workerC.waitReady(t)
		s.waitHealthy(t, translate.GRPCCluster(sampleModel), workerA, workerC)

		l := startLoad(infer, all.token, loadClients)
		time.Sleep(1500 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hosts, err := s.clusterHosts(ctx, translate.GRPCCluster(sampleModel))
		if err != nil {
			l.stop()
			t.Fatal(err)
		}
		killedAt := time.Now()
		s.kill(t, workerC)
		time.Sleep(1500 * time.Millisecond)
		out := l.stop()

		before, after := out.between(time.Time{}, killedAt), out.between(killedAt, time.Now())
		if first, last, ok := out.failureSpan(); ok {
			t.Logf("failures from %v to %v after the kill", first.Sub(killedAt).Round(time.Millisecond), last.Sub(killedAt).Round(time.Millisecond))
		}
		t.Logf("kill under load: %d clients; before the kill %d ok / %d failed (worker killed had %d successes); after %d ok / %d failed %v",
			loadClients, before.ok, before.failed, hosts[workerC.endpoint()].rqSuccess, after.ok, after.failed, after)
		s.logClusterStats(t, translate.GRPCCluster(sampleModel), `upstream_rq_retry|upstream_cx_connect_fail|outlier_detection\.ejections_enforced_total`)
		if before.failed != 0 {
			t.Errorf("%d failures before the kill: %v", before.failed, before)
		}
		if hosts[workerC.endpoint()].rqSuccess == 0 {
			t.Errorf("the killed worker served nothing before the kill (hosts %v): the kill proves nothing", hosts)
		}
		if after.ok == 0 {
			t.Errorf("no request succeeded after the kill")
		}
		if after.failed > maxKillFailures {
			t.Errorf("%d client-visible failures after the kill, want at most %d: %v", after.failed, maxKillFailures, after)
		}
	})

	t.Run("Envoy's listener certificate rotated under load: nothing dropped", func(t *testing.T) {
		before := s.gatewaySerial(t)
		l := startLoad(infer, all.token, loadClients)
		time.Sleep(time.Second)
		rotatedAt := time.Now()
		s.gatewayTLS.rotate(t, s.issue(t, "gateway-rotated"))
		var after string
		waitFor(t, "Envoy serving the new certificate", 15*time.Second, nil, func(context.Context) error {
			if after = s.gatewaySerial(t); after == before {
				return fmt.Errorf("still serial %s", before)
			}
			return nil
		})
		servedAt := time.Now()
		time.Sleep(time.Second)
		out := l.stop()
		all := out.between(time.Time{}, time.Now())
		t.Logf("rotation: serial %s -> %s, new certificate served %v after the swap; under load %d ok / %d failed %v",
			before, after, servedAt.Sub(rotatedAt).Round(time.Millisecond), all.ok, all.failed, all)
		if all.ok == 0 || all.failed != 0 {
			t.Errorf("certificate rotation under load: %d ok, %d failed %v; want none failed", all.ok, all.failed, all)
		}
		// The load's connection began before the swap and was never cut:
		// it carried requests after the new certificate was served.
		if out.between(servedAt, time.Now()).ok == 0 {
			t.Error("no request on the existing connection after the rotation")
		}
	})

	t.Run("helix-xds restarted: Envoy keeps serving, then resyncs", func(t *testing.T) {
		live := []*worker{workerA}
		if workerB != nil {
			live = append(live, workerB)
		}
		regs := make([]int, len(live))
		for i, w := range live {
			regs[i] = len(w.registrations(t))
		}
		l := startLoad(infer, all.token, 2)
		stoppedAt := time.Now()
		t.Logf("helix-xds stopped in %v", s.stopXDS(t).Round(time.Millisecond))
		time.Sleep(2 * time.Second) // Envoy runs without a control plane
		restartedAt := time.Now()
		s.restartXDS(parent) // outlives this subtest, for the checks after it
		// Workers register again: their renewals fail with NOT_FOUND on the
		// new registry, and they register with backoff.
		for i, w := range live {
			at := w.waitRegistered(t, regs[i], 20*time.Second)
			t.Logf("%s registered again %v after helix-xds restarted", w.name, at.Sub(restartedAt).Round(time.Millisecond))
		}
		waitFor(t, "Envoy connected to the new helix-xds", 30*time.Second, s.proc(helixstack.XDS), func(ctx context.Context) error {
			return s.envoyConnected(ctx)
		})
		// Resynced: every worker is routed to again.
		s.waitHealthy(t, translate.GRPCCluster(sampleModel), workerA)
		if workerB != nil {
			s.waitHealthy(t, translate.GRPCCluster("mlp"), workerB)
		}
		out := l.stop()
		down, resync := out.between(stoppedAt, restartedAt), out.between(restartedAt, time.Now())
		t.Logf("helix-xds down %v: %d ok / %d failed; after its restart until resynced (%v): %d ok / %d failed %v",
			restartedAt.Sub(stoppedAt).Round(time.Millisecond), down.ok, down.failed,
			time.Since(restartedAt).Round(time.Millisecond), resync.ok, resync.failed, resync)
		t.Run("requests succeed while it is down", func(t *testing.T) {
			if down.ok == 0 || down.failed != 0 {
				t.Errorf("while helix-xds was down: %d ok, %d failed %v; want all to succeed", down.ok, down.failed, down)
			}
		})
		t.Run("no request fails while workers register again", func(t *testing.T) {
			// A restarted helix-xds starts with an empty registry; publishing
			// it before the workers are back would drop every endpoint.
			if resync.ok == 0 || resync.failed != 0 {
				t.Errorf("after helix-xds restarted: %d ok, %d failed %v; want Envoy to keep its endpoints until the workers are back",
					resync.ok, resync.failed, resync)
			}
		})

		// A config change after the restart reaches Envoy.
		c := s.cfg
		c.corsOrigin = "https://e2e-after-restart.example"
		writeGatewayConfig(t, s.cfgPath, c)
		waitFor(t, "Envoy has the config written after the restart", 15*time.Second, s.proc(helixstack.XDS), func(ctx context.Context) error {
			dump, err := s.envoy.Admin(ctx, "/config_dump")
			if err != nil {
				return err
			}
			if !strings.Contains(dump, "e2e-after-restart.example") {
				return fmt.Errorf("not in the config yet")
			}
			return nil
		})
		if code, body, err := s.restInfer(context.Background(), https, sampleModel, all.token, nil); err != nil || code != http.StatusOK {
			t.Fatalf("after the config change: %d %s (%v)", code, body, err)
		}
	})

	t.Run("Envoy took every config", func(t *testing.T) { s.checkNoRejectedConfig(t) })
}

// gatewaySerial is the serial number of the certificate Envoy's listener
// presents to a new connection.
func (s *stack) gatewaySerial(t *testing.T) string {
	t.Helper()
	d := tls.Dialer{Config: &tls.Config{RootCAs: s.caPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", s.gateway)
	if err != nil {
		t.Fatalf("TLS to the gateway: %v", err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// logClusterStats logs the cluster's non-zero Envoy stats that match
// the regular expression.
func (s *stack) logClusterStats(t *testing.T, cluster, stats string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Envoy's stat names write "/" as "_".
	prefix := "cluster." + strings.ReplaceAll(cluster, "/", "_") + "."
	body, err := s.envoy.Admin(ctx, "/stats?filter="+url.QueryEscape("^"+regexp.QuoteMeta(prefix)+"("+stats+")"))
	if err != nil {
		t.Logf("Envoy stats: %v", err)
		return
	}
	var nonzero []string
	for line := range strings.SplitSeq(strings.TrimSpace(body), "\n") {
		if line != "" && !strings.HasSuffix(line, ": 0") {
			nonzero = append(nonzero, strings.TrimPrefix(line, prefix))
		}
	}
	t.Logf("Envoy stats of %s: %s", cluster, strings.Join(nonzero, ", "))
}

// envoyConnected reports whether helix-xds's status lists the e2e Envoy
// with every type acknowledged at the version served.
func (s *stack) envoyConnected(ctx context.Context) error {
	b, err := httpGet(ctx, http.DefaultClient, s.xdsURL+"/status")
	if err != nil {
		return err
	}
	var st struct {
		Nodes []struct {
			ID    string            `json:"id"`
			Acked map[string]string `json:"acked"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	for _, n := range st.Nodes {
		if n.ID == "e2e-envoy" && len(n.Acked) > 0 {
			return nil
		}
	}
	return fmt.Errorf("e2e-envoy not connected: %s", b)
}

// load sends ModelInfer on simple through Envoy from several goroutines
// and records every outcome with its time.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    []outcome
}

type outcome struct {
	at  time.Time
	err error
}

func startLoad(c inference.GRPCInferenceServiceClient, token string, clients int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	pace := rate.NewLimiter(loadRate, clients)
	for range clients {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				if pace.Wait(ctx) != nil {
					return // stopped
				}
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := c.ModelInfer(rctx, samplemodel.InferRequest())
				rcancel()
				if ctx.Err() != nil {
					return // cut short by stop, not a failure
				}
				if err == nil {
					err = simpleOutputsError(resp)
				}
				l.mu.Lock()
				l.res = append(l.res, outcome{at: time.Now(), err: err})
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *load) stop() loadOutcomes {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadOutcomes(slices.Clone(l.res))
}

type loadOutcomes []outcome

type tally struct {
	ok, failed int
	errs       map[string]int // failure message -> count
}

// between counts the outcomes that completed in [from, to).
func (o loadOutcomes) between(from, to time.Time) tally {
	t := tally{errs: map[string]int{}}
	for _, r := range o {
		if r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		if r.err == nil {
			t.ok++
			continue
		}
		t.failed++
		msg := r.err.Error()
		if st, ok := status.FromError(r.err); ok {
			msg = st.Code().String() + ": " + st.Message()
		}
		t.errs[msg]++
	}
	return t
}

// failureSpan is the time of the first and last failure.
func (o loadOutcomes) failureSpan() (first, last time.Time, ok bool) {
	for _, r := range o {
		if r.err == nil {
			continue
		}
		if !ok || r.at.Before(first) {
			first = r.at
		}
		if !ok || r.at.After(last) {
			last = r.at
		}
		ok = true
	}
	return first, last, ok
}

func (t tally) String() string {
	keys := slices.Sorted(maps.Keys(t.errs))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%dx %q", t.errs[k], k)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// simpleOutputsError is checkGRPCOutputs for goroutines: an error, not a
// test failure.
func simpleOutputsError(r *inference.ModelInferResponse) error {
	if r.GetModelName() != sampleModel || len(r.GetRawOutputContents()) != 2 {
		return fmt.Errorf("bad response: %v", r)
	}
	for i, o := range r.GetOutputs() {
		raw := r.GetRawOutputContents()[i]
		if len(raw) != 64 {
			return fmt.Errorf("%s has %d bytes", o.GetName(), len(raw))
		}
		for j := range 16 {
			want := int32(j) + 1
			if o.GetName() == "OUTPUT1" {
				want = int32(j) - 1
			}
			if got := int32(binary.LittleEndian.Uint32(raw[4*j:])); got != want {
				return fmt.Errorf("%s[%d] = %d, want %d", o.GetName(), j, got, want)
			}
		}
	}
	return nil
}

// mlpInput is the mlp model's input: 256 values, i/256.
func mlpInput() []float32 {
	in := make([]float32, 256)
	for i := range in {
		in[i] = float32(i) / 256
	}
	return in
}

func mlpRESTBody() []byte {
	b, _ := json.Marshal(map[string]any{"inputs": []map[string]any{
		{"name": "input", "shape": []int{1, 256}, "datatype": "FP32", "data": mlpInput()},
	}})
	return b
}

func mlpRequest() *inference.ModelInferRequest {
	raw := make([]byte, 4*256)
	for i, v := range mlpInput() {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return &inference.ModelInferRequest{
		ModelName:        "mlp",
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 256}}},
		RawInputContents: [][]byte{raw},
	}
}

// checkMLPOutputs checks a REST answer from mlp: 10 probabilities that sum
// to 1.
func checkMLPOutputs(t *testing.T, body []byte) {
	t.Helper()
	var r struct {
		ModelName string `json:"model_name"`
		Outputs   []struct {
			Name string    `json:"name"`
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("mlp response %s: %v", body, err)
	}
	if r.ModelName != "mlp" || len(r.Outputs) != 1 || r.Outputs[0].Name != "probabilities" || len(r.Outputs[0].Data) != 10 {
		t.Fatalf("mlp response = %s", body)
	}
	sum := 0.0
	for _, p := range r.Outputs[0].Data {
		sum += p
	}
	if math.Abs(sum-1) > 1e-3 {
		t.Fatalf("mlp probabilities sum to %v: %s", sum, body)
	}
}
