package e2e

// Issue 17 end to end: traffic policies of the gateway config file (a
// 90/10 split, sticky A/B, a shadow) and progressive rollouts asked for
// with helixctl, on the real stack: Envoy, helix-xds with its rollout
// controller, helix-authz with its admin API on Postgres, Prometheus
// scraping every second, and helix-workers in pools serving versions of
// the sample model. Every version links the same model file: answers are
// alike and their model_version tells which variant served.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/samplemodel"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/xds/translate"
)

// The pools of the traffic stack's workers, besides the default one.
const (
	poolShadow = "shadow"
	poolCanary = "canary"
)

// Configs that make a version misbehave, appended to the sample's: the
// worker's own dynamic batcher, with room for more requests than ever
// queue (max_batch_size 1024), so a request waits in the queue for the
// whole delay.
const (
	// rejectAll: every request's queue timeout (1 ms) expires before the
	// delay (500 ms): the worker answers DEADLINE_EXCEEDED (gRPC) or 503
	// (REST) "request timeout expired ... in queue".
	rejectAll = "dynamic_batching {\n  max_queue_delay_microseconds: 500000\n" +
		"  default_queue_policy { timeout_action: REJECT, default_timeout_microseconds: 1000 }\n}\n"
	// sleep300ms: every request waits 300 ms, then is answered.
	sleep300ms  = "dynamic_batching { max_queue_delay_microseconds: 300000 }\n"
	shadowSleep = 300 * time.Millisecond
	// bothVersions serves every version folder (the default serves the
	// latest only).
	bothVersions = "version_policy: { all: {} }\n"
	onlyVersion2 = "version_policy: { specific: { versions: [2] } }\n"
)

// canaryRefusal is how the rejecting canary's answers read.
var canaryRefusal = regexp.MustCompile(`request timeout expired for model '[a-z_]+' after .* in queue`)

// trafficStack is the stack of TestTraffic: helix-worker-stable (pool
// default) serves versions 1 and 2 of the sample model, helix-worker-shadow
// (pool shadow) version 3, helix-worker-canary (pool canary) a version 2
// that refuses every request.
type trafficStack struct {
	stack
	stable, shadow, canary int // indices in st.Workers()
	repos                  map[int]string
	infer                  inference.GRPCInferenceServiceClient
	https                  *http.Client
	admin                  *admin.Client
	user                   client // models:infer on every model
	base                   []byte // the gateway config without traffic
	traffic                string // the config's traffic section now
}

// TestTraffic runs issue 17's end-to-end checks on one stack. Its
// figures (split, shadow share, latencies, rollback time) are logged.
func TestTraffic(t *testing.T) {
	started := time.Now()
	s := startTrafficStack(t)
	t.Logf("stack up in %v", time.Since(started).Round(time.Millisecond))

	t.Run("90/10 split, non-sticky, over 10,000 requests", s.testSplit)
	t.Run("sticky: 50 clients each see one variant", s.testSticky)
	t.Run("shadow 50%: its share reaches the shadow pool, its failures and delays never reach the client", s.testShadow)
	t.Run("a canary that answers errors is rolled back within two intervals", s.testRollback)
	t.Run("a healthy canary reaches 100%, then the old version is unloaded", s.testHealthyRollout)
	t.Run("Envoy took every config", func(t *testing.T) { s.checkNoRejectedConfig(t) })
	t.Logf("TestTraffic took %v", time.Since(started).Round(time.Millisecond))
}

func startTrafficStack(t *testing.T) *trafficStack {
	t.Helper()
	s := &trafficStack{stack: stack{clients: map[string]client{}}, repos: map[int]string{}}
	repo := func(m helixstack.RepoModel) string {
		dir := t.TempDir()
		if err := helixstack.MakeRepository(repoRoot, dir, m); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	stableRepo := repo(helixstack.RepoModel{Sample: sampleModel, Versions: []int{1, 2}, Config: bothVersions})
	shadowRepo := repo(helixstack.RepoModel{Sample: sampleModel, Versions: []int{3}, MaxBatchSize: 1024})
	canaryRepo := repo(helixstack.RepoModel{Sample: sampleModel, Versions: []int{2}, MaxBatchSize: 1024, Config: rejectAll})
	s.stable, s.shadow, s.canary = 0, 1, 2
	s.repos = map[int]string{s.stable: stableRepo, s.shadow: shadowRepo, s.canary: canaryRepo}
	st := launch(t, helixstack.Options{
		NodeID: "e2e-envoy",
		Workers: []helixstack.Worker{
			{Name: "helix-worker-stable", Repository: stableRepo, Models: []string{sampleModel}},
			{Name: "helix-worker-shadow", Repository: shadowRepo, Models: []string{sampleModel}, Pool: poolShadow},
			{Name: "helix-worker-canary", Repository: canaryRepo, Models: []string{sampleModel}, Pool: poolCanary},
		},
		Monitoring:     true,
		ScrapeInterval: time.Second,
		Args:           map[string][]string{helixstack.XDS: {"--lease-ttl=5s"}},
		GatewayConfig: func(st *helixstack.Stack) ([]byte, error) {
			s.cfg = gatewayConfig{
				listen: st.Ports.Gateway, listenerCert: pair(st, pki.EnvoyServer),
				authzPort: st.Ports.ExtAuthz, publicPort: st.Ports.Authz, ca: st.CAFile(), envoyClient: pair(st, pki.EnvoyAuthzClient),
				rateLimits: true, workersTLS: true,
			}
			// Every client here is 127.0.0.1: the per-source limit
			// (default 1,000/s) would refuse the bursts.
			s.base = append(gatewayYAML(s.cfg), "source_limit: {requests_per_second: 100000, burst: 100000}\n"...)
			// Production is pinned to version 1 of the default pool: the
			// shadow and canary pools get nothing until a policy says so.
			s.traffic = pinnedPolicy
			return append(slices.Clone(s.base), s.traffic...), nil
		},
	})
	s.attach(t, st)
	s.cfgPath = st.ConfigPath()
	for i := range st.Workers() {
		s.workers = append(s.workers, s.newWorker(t, i))
	}
	s.createClients(t, "traffic-", map[string][2]string{"user": {"models:infer", "standard"}})
	s.user = s.clients["user"]
	s.infer = inference.NewGRPCInferenceServiceClient(s.grpcConn(t))
	s.https = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
	}}
	ac, err := admin.NewClient(st.AdminURL(), st.AdminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.admin = ac
	waitFor(t, "version 1 answering through Envoy", 60*time.Second, s.workers[s.stable].proc, func(ctx context.Context) error {
		r := s.grpcInfer(ctx, s.user.token)
		if r.err != nil {
			return r.err
		}
		if r.version != "1" {
			return fmt.Errorf("answered by version %q", r.version)
		}
		return nil
	})
	return s
}

// pinnedPolicy sends every request to version 1 in the default pool.
const pinnedPolicy = `traffic:
  simple:
    variants:
      - {name: stable, version: "1", pool: default, weight: 100}
`

// setTraffic writes the gateway config with traffic (YAML, "" for none)
// and waits until Envoy acknowledged the config it makes.
func (s *trafficStack) setTraffic(t *testing.T, traffic string) {
	t.Helper()
	if traffic == s.traffic {
		return
	}
	before := s.xdsStatus(t)
	s.writeTraffic(t, traffic)
	s.waitConfigApplied(t, before.Versions["config"].Version)
}

// writeTraffic writes the gateway config with traffic, for a change that
// Envoy does not see (a rollout's policy replaces the model's).
func (s *trafficStack) writeTraffic(t *testing.T, traffic string) {
	t.Helper()
	if err := os.WriteFile(s.cfgPath, append(slices.Clone(s.base), traffic...), 0o600); err != nil {
		t.Fatal(err)
	}
	s.traffic = traffic
}

// xdsStatusDoc is the part of helix-xds's /status these tests read.
type xdsStatusDoc struct {
	Versions map[string]struct {
		Version string `json:"version"`
	} `json:"versions"`
	Nodes []struct {
		Acked map[string]string `json:"acked"`
	} `json:"nodes"`
}

func (s *trafficStack) xdsStatus(t *testing.T) xdsStatusDoc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := httpGet(ctx, http.DefaultClient, s.xdsURL+"/status")
	if err != nil {
		t.Fatal(err)
	}
	var st xdsStatusDoc
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("/status %s: %v", b, err)
	}
	return st
}

// waitConfigApplied waits until helix-xds publishes a config other than
// before and Envoy acknowledged its routes and clusters.
func (s *trafficStack) waitConfigApplied(t *testing.T, before string) {
	t.Helper()
	waitFor(t, "the new gateway config acknowledged by Envoy", 20*time.Second, s.proc(helixstack.XDS), func(context.Context) error {
		st := s.xdsStatus(t)
		v := st.Versions["config"].Version
		if v == before {
			return errors.New("helix-xds still serves the previous config")
		}
		if len(st.Nodes) != 1 {
			return fmt.Errorf("%d Envoys connected", len(st.Nodes))
		}
		for _, typ := range []string{"route", "cluster"} {
			if got := st.Nodes[0].Acked[typ]; got != v {
				return fmt.Errorf("Envoy acknowledged %s %q, helix-xds serves %q", typ, got, v)
			}
		}
		return nil
	})
}

// answer is one request's outcome.
type answer struct {
	at      time.Time
	latency time.Duration
	version string // the answer's model_version
	err     error
}

// canaryError: the refusing canary answered (expected while it gets
// traffic); any other error is a failure.
func (a answer) canaryError() bool { return a.err != nil && canaryRefusal.MatchString(a.err.Error()) }

// grpcInfer sends the sample request over gRPC through Envoy.
func (s *trafficStack) grpcInfer(ctx context.Context, token string, md ...string) answer {
	ctx = metadata.AppendToOutgoingContext(ctx, append([]string{"authorization", "Bearer " + token}, md...)...)
	start := time.Now()
	resp, err := s.infer.ModelInfer(ctx, samplemodel.InferRequest())
	a := answer{at: start, latency: time.Since(start), err: err}
	if err == nil {
		a.version = resp.GetModelVersion()
	}
	return a
}

// restAnswer sends the sample request over REST through Envoy.
func (s *trafficStack) restAnswer(ctx context.Context, token string) answer {
	start := time.Now()
	code, body, err := s.restPost(ctx, s.https, sampleModel, samplemodel.RESTBody(), token, nil)
	a := answer{at: start, latency: time.Since(start), err: err}
	if err == nil && code != http.StatusOK {
		a.err = fmt.Errorf("HTTP %d: %.300s", code, body)
	}
	if a.err == nil {
		var r struct {
			Version string `json:"model_version"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			a.err = fmt.Errorf("answer %.300s: %w", body, err)
		}
		a.version = r.Version
	}
	return a
}

// burst sends n gRPC requests with conc at a time, as fast as they go.
func (s *trafficStack) burst(t *testing.T, n, conc int, token string) []answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := make([]answer, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := range next {
				rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
				out[i] = s.grpcInfer(rctx, token)
				rcancel()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// answerTally counts answers by version and errors, keeping a few errors.
type answerTally struct {
	n        int
	versions map[string]int
	errors   int
	canary   int // errors the refusing canary answered
	examples []string
}

func countAnswers(as []answer) answerTally {
	c := answerTally{n: len(as), versions: map[string]int{}}
	for _, a := range as {
		switch {
		case a.err == nil:
			c.versions[a.version]++
		case a.canaryError():
			c.canary++
		default:
			c.errors++
			if len(c.examples) < 5 {
				c.examples = append(c.examples, fmt.Sprintf("%s: %v", a.at.Format("15:04:05.000"), a.err))
			}
		}
	}
	return c
}

func (c answerTally) String() string {
	return fmt.Sprintf("%d requests: versions %v, %d canary refusals, %d failures %v", c.n, c.versions, c.canary, c.errors, c.examples)
}

// percentile of the answers' latencies (q in [0,1]).
func percentile(as []answer, q float64) time.Duration {
	ls := make([]time.Duration, 0, len(as))
	for _, a := range as {
		ls = append(ls, a.latency)
	}
	slices.Sort(ls)
	if len(ls) == 0 {
		return 0
	}
	return ls[min(len(ls)-1, int(math.Ceil(q*float64(len(ls))))-1)]
}

const splitPolicy = `traffic:
  simple:
    sticky: %v
    variants:
      - {name: stable, version: "1", pool: default, weight: 90}
      - {name: canary, version: "2", pool: default, weight: 10}
`

// testSplit: 10,000 requests of one client, non-sticky, land 90/10
// within 3 percentage points.
func (s *trafficStack) testSplit(t *testing.T) {
	s.setTraffic(t, fmt.Sprintf(splitPolicy, false))
	start := time.Now()
	c := countAnswers(s.burst(t, 10000, 16, s.user.token))
	t.Logf("split: %v in %v", c, time.Since(start).Round(time.Millisecond))
	if c.errors+c.canary != 0 || c.versions["1"]+c.versions["2"] != c.n {
		t.Fatalf("want every answer from version 1 or 2: %v", c)
	}
	share := 100 * float64(c.versions["2"]) / float64(c.n)
	t.Logf("FIGURE split: version 2 served %.2f%% of %d requests (policy 10%%)", share, c.n)
	if math.Abs(share-10) > 3 {
		t.Errorf("version 2 served %.2f%%, want 10 ± 3", share)
	}
}

// testSticky: 50 clients of their own, 20 requests each; each sees one
// version, the one its assignment hash picks (wire.AssignmentValue modulo
// the total weight, in the config's order: below 90 is stable).
func (s *trafficStack) testSticky(t *testing.T) {
	s.setTraffic(t, fmt.Sprintf(splitPolicy, true))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const clients, each = 50, 20
	type seen struct {
		id       string
		versions map[string]int
		err      error
	}
	results := make([]seen, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			name, plan, scopes, models := fmt.Sprintf("traffic-ab-%02d", i), "standard", []string{"models:infer"}, []string{"*"}
			c, err := s.admin.CreateClient(ctx, admin.ClientRequest{Name: &name, Plan: &plan, Scopes: &scopes, Models: &models})
			if err != nil {
				results[i].err = err
				return
			}
			tok, err := s.st.Token(ctx, c.ClientID, c.ClientSecret)
			if err != nil {
				results[i].err = err
				return
			}
			results[i] = seen{id: c.ClientID, versions: map[string]int{}}
			for range each {
				a := s.grpcInfer(ctx, tok.AccessToken)
				if a.err != nil {
					results[i].err = a.err
					return
				}
				results[i].versions[a.version]++
			}
		})
	}
	wg.Wait()
	onCanary, unpredicted := 0, 0
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("client %s: %v", r.id, r.err)
		}
		if len(r.versions) != 1 {
			t.Errorf("client %s saw versions %v, want one", r.id, r.versions)
			continue
		}
		want := "1"
		if wire.AssignmentValue(r.id, sampleModel)%100 >= 90 {
			want = "2"
		}
		if r.versions[want] != each {
			unpredicted++
			t.Errorf("client %s saw %v; its assignment (%s) picks version %s", r.id, r.versions, wire.AssignmentHeaderValue(r.id, sampleModel), want)
		}
		if r.versions["2"] > 0 {
			onCanary++
		}
	}
	t.Logf("FIGURE sticky: %d clients × %d requests: each saw one version; %d on version 2 (10%% policy), %d not where their hash says",
		clients, each, onCanary, unpredicted)
}

const shadowPolicy = `traffic:
  simple:
    variants:
      - {name: stable, version: "1", pool: default, weight: 100}
    shadow: {name: mirror, version: "3", pool: shadow, percent: 50}
`

// testShadow: with 50% mirrored to the shadow pool, the shadow worker
// receives at least 95% of half the requests (its own metrics), and a
// shadow that refuses everything or takes 300 ms per request costs the
// client no error and no p99 beyond noise (the same burst without a
// shadow is the baseline).
func (s *trafficStack) testShadow(t *testing.T) {
	const conc = 8
	s.setTraffic(t, pinnedPolicy)
	s.burst(t, 200, conc, s.user.token) // warm-up
	base := s.burst(t, 2000, conc, s.user.token)
	if c := countAnswers(base); c.errors != 0 {
		t.Fatalf("without a shadow: %v", c)
	}
	s.setTraffic(t, shadowPolicy)
	w := s.workers[s.shadow]
	for _, tc := range []struct {
		name   string
		config string // the shadow version's config, appended to the sample's ("": as it started)
		n      int
		// minShare of its half the shadow must count: 95% is 3.2
		// standard deviations of Envoy's random draw below the mean at
		// 4,000 requests; the misbehaving shadows are asked less (4.5 at
		// 2,000), as they are there for the client's view.
		minShare float64
		settle   time.Duration // for the last mirrored requests
	}{
		{"healthy", "", 4000, 0.95, 500 * time.Millisecond},
		{"refusing every request", rejectAll, 2000, 0.90, 500 * time.Millisecond},
		{"sleeping 300 ms", sleep300ms, 2000, 0.90, shadowSleep + 700*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.config != "" {
				s.reloadModel(t, s.shadow, helixstack.RepoModel{Sample: sampleModel, Versions: []int{3}, MaxBatchSize: 1024, Config: tc.config})
			}
			before := s.workerRequests(t, w, "3")
			got := s.burst(t, tc.n, conc, s.user.token)
			c := countAnswers(got)
			time.Sleep(tc.settle)
			received := s.workerRequests(t, w, "3") - before
			share := received / (float64(tc.n) / 2)
			b50, b99, p50, p99 := percentile(base, .5), percentile(base, .99), percentile(got, .5), percentile(got, .99)
			t.Logf("FIGURE shadow %s: %v; shadow received %.0f of %d mirrored (%.1f%% of its share); client p50 %v p99 %v, without shadow p50 %v p99 %v",
				tc.name, c, received, tc.n/2, 100*share, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond),
				b50.Round(10*time.Microsecond), b99.Round(10*time.Microsecond))
			if c.errors+c.canary != 0 || c.versions["1"] != tc.n {
				t.Errorf("the client saw more than version 1's answers: %v", c)
			}
			if share < tc.minShare {
				t.Errorf("the shadow received %.1f%% of its share, want at least %.0f%%", 100*share, 100*tc.minShare)
			}
			// Waiting for the sleeping shadow would add its 300 ms to
			// every other request: p75 shows it, without the tail's
			// noise (2 shared vCPUs, the shadow's work on them too), whose
			// bound is loose on purpose.
			if b75, p75 := percentile(base, .75), percentile(got, .75); p75 > b75+50*time.Millisecond {
				t.Errorf("p75 %v with the shadow, %v without", p75, b75)
			}
			if limit := b99 + shadowSleep; p99 > limit {
				t.Errorf("p99 %v with the shadow, %v without: more than %v", p99, b99, limit)
			}
		})
	}
	s.setTraffic(t, pinnedPolicy)
}

// reloadModel rewrites the sample model's config.pbtxt in worker i's
// repository as m makes it and asks the worker to load it again (the
// repository API, over mTLS with Envoy's worker certificate).
func (s *trafficStack) reloadModel(t *testing.T, i int, m helixstack.RepoModel) {
	t.Helper()
	dir := t.TempDir()
	if err := helixstack.MakeRepository(repoRoot, dir, m); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, sampleModel, "config.pbtxt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.repos[i], sampleModel, "config.pbtxt"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	w := s.workers[i]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.healthBase+"/v2/repository/models/"+sampleModel+"/load", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.health.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("load %s on %s: %s %s", sampleModel, w.name, resp.Status, body)
	}
}

// workerRequests is what worker w counted of the sample model's version:
// nv_inference_request_success plus _failure, from its metrics.
func (s *trafficStack) workerRequests(t *testing.T, w *worker, version string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	i := slices.IndexFunc(s.st.Workers(), func(x helixstack.Worker) bool { return x.Name == w.name })
	b, err := httpGet(ctx, http.DefaultClient, fmt.Sprintf("http://%s/metrics", addr(s.st.Ports.Workers[i].Metrics)))
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "nv_inference_request_success{") && !strings.HasPrefix(line, "nv_inference_request_failure{") {
			continue
		}
		if !strings.Contains(line, `model="`+sampleModel+`"`) || !strings.Contains(line, `version="`+version+`"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		total += v
	}
	return total
}

// steadyLoad sends requests through Envoy until stopped: four gRPC
// senders and one REST sender, each about 100 a second at most.
type steadyLoad struct {
	mu      sync.Mutex
	answers []answer
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func (s *trafficStack) startLoad(token string) *steadyLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &steadyLoad{cancel: cancel}
	send := func(f func(context.Context) answer) {
		for ctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			a := f(rctx)
			rcancel()
			if ctx.Err() != nil {
				return // cut short by stop: not an answer
			}
			l.mu.Lock()
			l.answers = append(l.answers, a)
			l.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}
	for range 4 {
		l.wg.Go(func() { send(func(ctx context.Context) answer { return s.grpcInfer(ctx, token) }) })
	}
	l.wg.Go(func() { send(func(ctx context.Context) answer { return s.restAnswer(ctx, token) }) })
	return l
}

// stop ends the load and returns every answer.
func (l *steadyLoad) stop() []answer {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.answers)
}

// since returns the answers to requests sent at or after from.
func (l *steadyLoad) since(from time.Time) []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []answer
	for _, a := range l.answers {
		if !a.at.Before(from) {
			out = append(out, a)
		}
	}
	return out
}

// rollout starts a rollout with helixctl, as an operator would, and
// returns its id.
func (s *trafficStack) rollout(t *testing.T, args ...string) int64 {
	t.Helper()
	out := runCmd(t, s.adminEnv, bin("helixctl"), append([]string{"rollout", "start", sampleModel, "--output", "json"}, args...)...)
	var r admin.RolloutView
	if err := json.Unmarshal(out, &r); err != nil || r.ID == 0 {
		t.Fatalf("helixctl rollout start: %v in %s", err, out)
	}
	var compact bytes.Buffer
	if json.Compact(&compact, out) == nil {
		out = compact.Bytes()
	}
	t.Logf("rollout %d: %s", r.ID, out)
	return r.ID
}

// stepChange is a weight the controller applied, as polled.
type stepChange struct {
	at     time.Time
	weight int
	state  string
}

// steps shows changes as "+0s 0% running, +1.1s 20% running, ...",
// timed from the rollout's start.
func steps(start time.Time, cs []stepChange) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("+%v %d%% %s", c.at.Sub(start).Round(100*time.Millisecond), c.weight, c.state)
	}
	return strings.Join(parts, ", ")
}

// follow polls rollout id until it reaches one of the final states (or d
// passes) and returns it with the changes of weight and state seen.
func (s *trafficStack) follow(t *testing.T, id int64, d time.Duration, final ...string) (*admin.RolloutView, []stepChange) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var changes []stepChange
	for {
		r, err := s.admin.GetRollout(ctx, id)
		if err != nil {
			t.Fatalf("rollout %d: %v (changes so far %v)", id, err, changes)
		}
		if n := len(changes); n == 0 || changes[n-1].weight != r.Weight || changes[n-1].state != r.State {
			changes = append(changes, stepChange{at: time.Now(), weight: r.Weight, state: r.State})
		}
		if slices.Contains(final, r.State) {
			return r, changes
		}
		select {
		case <-ctx.Done():
			t.Fatalf("rollout %d: not %v within %v: state %s weight %d reason %q; changes %v", id, final, d, r.State, r.Weight, r.Reason, changes)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// failuresAround counts the failed answers (not the canary's refusals)
// to requests sent within a second of each change.
func failuresAround(as []answer, changes []stepChange) []int {
	out := make([]int, len(changes))
	for i, c := range changes {
		for _, a := range as {
			if a.err != nil && !a.canaryError() && a.at.After(c.at.Add(-time.Second)) && a.at.Before(c.at.Add(time.Second)) {
				out[i]++
			}
		}
	}
	return out
}

// testRollback: a rollout to the canary pool's version 2, which refuses
// every request, is rolled back at its first evaluation: within two
// intervals of its start; under steady load no request fails but those
// the canary itself refused.
func (s *trafficStack) testRollback(t *testing.T) {
	const interval = 5 * time.Second
	s.setTraffic(t, pinnedPolicy)
	load := s.startLoad(s.user.token)
	time.Sleep(time.Second) // a baseline before the rollout
	id := s.rollout(t, "--to", "2", "--to-pool", poolCanary, "--from", "1", "--steps", "20,50,100",
		"--interval", interval.String(), "--slo", "error_ratio<0.05", "--no-sticky")
	r, changes := s.follow(t, id, 4*interval, "rolled_back", "completed", "aborted")
	time.Sleep(2 * time.Second) // the rollback published, and load on the restored routes
	as := load.stop()
	if r.State != "rolled_back" {
		t.Fatalf("rollout %d ended %s (%q), want rolled_back", id, r.State, r.Reason)
	}
	took := r.UpdatedAt.Sub(r.CreatedAt)
	if r.EndedAt != nil {
		took = r.EndedAt.Sub(r.CreatedAt)
	}
	c := countAnswers(as)
	t.Logf("FIGURE rollback: rolled back %v after the rollout started (interval %v): %q; steps seen %s; load %v; failures within 1 s of each change %v",
		took.Round(time.Millisecond), interval, r.Reason, steps(r.CreatedAt, changes), c, failuresAround(as, changes))
	if took > 2*interval {
		t.Errorf("rolled back %v after the start, want within two intervals (%v)", took, 2*interval)
	}
	if !strings.Contains(r.Reason, "error") {
		t.Errorf("reason %q does not name the error ratio", r.Reason)
	}
	if c.errors != 0 {
		t.Errorf("requests failed other than by the canary's refusal: %v", c)
	}
	if c.canary == 0 {
		t.Errorf("the canary got no traffic before its rollback: %v", c)
	}
	// What the controller's error ratio reads of the canary's clusters:
	// Envoy charges a gRPC error to upstream_rq_xx as 200, the gRPC
	// statistics filter counts it by code (grpc.4, DEADLINE_EXCEEDED);
	// REST's are 503s (retried: each try counts).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	grpcStat := translate.ClusterStatName(translate.GRPCVariantCluster(sampleModel, "canary"))
	httpStat := translate.ClusterStatName(translate.HTTPVariantCluster(sampleModel, "canary"))
	stats, err := s.envoy.Admin(ctx, "/stats?filter=cluster.("+grpcStat+"|"+httpStat+").(upstream_rq_([0-9]xx|[0-9]+|total|retry)|grpc.[0-9]+)$")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURE canary clusters' stats: %s", strings.Join(strings.Fields(stats), " "))
	// Once rolled back (and published), the canary gets nothing.
	if late := countAnswers(load.since(time.Now().Add(-time.Second))); late.canary != 0 {
		t.Errorf("the canary still answered after the rollback: %v", late)
	}
	runCmd(t, s.adminEnv, bin("helixctl"), "rollout", "release", sampleModel)
}

// testHealthyRollout: a rollout to version 2 of the default pool advances
// to 100% and completes; version 1 is then unloaded from the worker (its
// version policy changed and the model loaded again, as an operator
// would), the config's pin moved to version 2 and the rollout released,
// all under steady load without a failed request.
func (s *trafficStack) testHealthyRollout(t *testing.T) {
	const interval = 3 * time.Second
	s.setTraffic(t, pinnedPolicy)
	load := s.startLoad(s.user.token)
	time.Sleep(time.Second)
	id := s.rollout(t, "--to", "2", "--to-pool", wire.DefaultPool, "--from", "1", "--steps", "25,100",
		"--interval", interval.String(), "--slo", "error_ratio<0.01,p99_ms<2000", "--no-sticky")
	r, changes := s.follow(t, id, 6*interval, "completed", "rolled_back", "aborted")
	if r.State != "completed" {
		load.stop()
		t.Fatalf("rollout %d ended %s (%q), want completed; steps %s", id, r.State, r.Reason, steps(r.CreatedAt, changes))
	}
	completed := time.Now()
	t.Logf("completed %v after the start: steps %s", r.UpdatedAt.Sub(r.CreatedAt).Round(time.Millisecond), steps(r.CreatedAt, changes))
	time.Sleep(time.Second)

	// Version 1 unloaded from the worker: it serves version 2 only.
	s.reloadModel(t, s.stable, helixstack.RepoModel{Sample: sampleModel, Versions: []int{1, 2}, Config: onlyVersion2})
	unloaded := time.Now()
	waitFor(t, "version 1 gone from the stable variant's cluster", 20*time.Second, nil, func(ctx context.Context) error {
		hosts, err := s.clusterHosts(ctx, translate.GRPCVariantCluster(sampleModel, "stable"))
		if err != nil {
			return err
		}
		if len(hosts) != 0 {
			return fmt.Errorf("hosts %v", hosts)
		}
		return nil
	})
	time.Sleep(time.Second)
	// The rollout is over: the config pins version 2 now (the canary pool
	// is still there; the rollout's policy hides this one until released:
	// more than one poll of the file and a debounce), then the rollout's
	// own pin is released.
	s.writeTraffic(t, strings.Replace(pinnedPolicy, `version: "1"`, `version: "2"`, 1))
	time.Sleep(2500 * time.Millisecond)
	before := s.xdsStatus(t)
	runCmd(t, s.adminEnv, bin("helixctl"), "rollout", "release", sampleModel)
	s.waitConfigApplied(t, before.Versions["config"].Version)
	time.Sleep(time.Second)
	as := load.stop()
	c := countAnswers(as)
	after := countAnswers(load.since(completed.Add(2 * time.Second)))
	t.Logf("FIGURE healthy rollout: steps %s; load %v; after completion %v; failures within 1 s of each change %v; version 1 unloaded %v after the start",
		steps(r.CreatedAt, changes), c, after, failuresAround(as, changes), unloaded.Sub(r.CreatedAt).Round(100*time.Millisecond))
	if c.errors+c.canary != 0 {
		t.Errorf("requests failed during the rollout, the unload or the release: %v", c)
	}
	if after.versions["1"] != 0 {
		t.Errorf("version 1 answered after the rollout completed: %v", after)
	}
	if c.versions["2"] == 0 || c.versions["1"] == 0 {
		t.Errorf("want answers of both versions over the rollout: %v", c)
	}
}
