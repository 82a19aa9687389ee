package e2e

// Observability end to end: the metric names every process exports
// (alerts/metrics.txt, which dashboards and rules are checked against), and
// a killed worker paged through the real Prometheus and Alertmanager with
// the rules of alerts/rules.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/samplemodel"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/supervise"
	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/internal/wire"
)

var updateMetrics = flag.Bool("update-metrics", false, "rewrite alerts/metrics.txt from what the processes export")

// metricsCatalogue is the checked-in list of exported metric names.
const metricsCatalogue = "alerts/metrics.txt"

// Processes as the catalogue names them.
const (
	procWorker = "helix-worker"
	procAuthz  = "helix-authz"
	procXDS    = "helix-xds"
	procEnvoy  = "envoy"
)

// TestObservability starts the stack once: its scraped metric names must
// match alerts/metrics.txt, then Prometheus and Alertmanager, configured by
// alerts/, scrape it and page for a killed worker.
func TestObservability(t *testing.T) {
	o := startObservedStack(t)
	o.driveTraffic(t)
	t.Run("metric catalogue", func(t *testing.T) { o.checkCatalogue(t) })
	t.Run("killed worker pages", func(t *testing.T) { o.checkWorkerDownAlert(t) })
}

// observedStack is the launcher's stack with one self-registering
// helix-worker (plaintext, serving the sample model and queuedModel), and
// every metrics endpoint known.
type observedStack struct {
	stack
	authzTLS   *http.Client
	worker     *supervise.Proc
	workerHTTP int
	// metrics maps each process to its metrics URL.
	metrics map[string]string
}

func startObservedStack(t *testing.T) *observedStack {
	t.Helper()
	o := &observedStack{stack: stack{clients: map[string]client{}}, metrics: map[string]string{}}
	repo := queueingRepository(t)
	st := launch(t, helixstack.Options{
		NodeID: "observed-envoy",
		// A day, so that the certificate expiry alerts fire (see
		// checkWorkerDownAlert).
		CertLifetime: 24 * time.Hour,
		Workers: []helixstack.Worker{{Name: procWorker, Repository: repo, Models: []string{sampleModel, queuedModel},
			Plaintext: true}},
		Args: map[string][]string{helixstack.XDS: {"--lease-ttl=5s", "--startup-grace=0s"}},
		GatewayConfig: func(st *helixstack.Stack) ([]byte, error) {
			o.cfg = gatewayConfig{
				listen: st.Ports.Gateway, listenerCert: pair(st, pki.EnvoyServer),
				authzPort: st.Ports.ExtAuthz, publicPort: st.Ports.Authz, ca: st.CAFile(), envoyClient: pair(st, pki.EnvoyAuthzClient),
				rateLimits: true,
			}
			return gatewayYAML(o.cfg), nil
		},
	})
	o.attach(t, st)
	o.cfgPath = st.ConfigPath()
	o.worker, o.workerHTTP = st.Proc(procWorker), st.Ports.Workers[0].HTTP
	o.metrics[procAuthz] = "http://" + addr(st.Ports.AuthzMetrics) + "/metrics"
	o.metrics[procWorker] = "http://" + addr(st.Ports.Workers[0].Metrics) + "/metrics"
	o.metrics[procXDS] = o.xdsURL + "/metrics"
	o.metrics[procEnvoy] = st.EnvoyAdminURL + "/stats/prometheus"
	o.authzTLS = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: o.caPool}}}
	o.createClients(t, "obs-", map[string][2]string{
		"all": {"models:infer,models:read", "standard"}, "mlp-only": {"models:mlp:infer", "standard"}, "free": {"models:infer", "free"},
	})
	return o
}

// queuedModel is the sample model with a queue that times every request
// out: the worker then counts a failure (nv_inference_request_failure,
// REJECTED), which the test cannot cause otherwise.
const queuedModel = "simple_queued"

// queueingRepository holds the sample model and queuedModel, both with
// the sample model's ONNX file.
func queueingRepository(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(repoRoot, "models", sampleModel)
	if err := os.Symlink(src, filepath.Join(dir, sampleModel)); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(src, "config.pbtxt"))
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte(`name: "`+sampleModel+`"`), []byte(`name: "`+queuedModel+`"`), 1)
	cfg = append(cfg, []byte(`
dynamic_batching {
  max_queue_delay_microseconds: 500000
  default_queue_policy { timeout_action: REJECT, default_timeout_microseconds: 1000 }
}
`)...)
	q := filepath.Join(dir, queuedModel)
	if err := os.MkdirAll(q, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(q, "config.pbtxt"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	// A version must be a folder; its model file may be a link.
	if err := os.Mkdir(filepath.Join(q, "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(src, "1", "model.onnx"), filepath.Join(q, "1", "model.onnx")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// driveTraffic makes every process count something: each label set the
// catalogue needs appears only once it has been counted.
func (o *observedStack) driveTraffic(t *testing.T) {
	t.Helper()
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: o.caPool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true,
	}}
	all, mlpOnly := o.clients["all"], o.clients["mlp-only"]
	waitFor(t, "first inference through Envoy", 30*time.Second, o.worker, func(ctx context.Context) error {
		code, body, err := o.restInfer(ctx, https, sampleModel, all.token, nil)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %s", code, body)
		}
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		what  string
		token string
		body  []byte // nil: a valid request
		want  int
	}{
		{"no token", "", nil, http.StatusUnauthorized},
		{"scope for another model", mlpOnly.token, nil, http.StatusForbidden},
		{"malformed input", all.token, []byte(`{"inputs":[{"name":"INPUT0","shape":[1,3],"datatype":"INT32","data":[1,2,3]}]}`), http.StatusBadRequest},
	} {
		var (
			code int
			body []byte
			err  error
		)
		if c.body == nil {
			code, body, err = o.restInfer(ctx, https, sampleModel, c.token, nil)
		} else {
			code, body, err = o.restPost(ctx, https, sampleModel, c.body, c.token, nil)
		}
		if err != nil || code != c.want {
			t.Fatalf("%s: %d %s (%v), want %d", c.what, code, body, err, c.want)
		}
	}
	// Over the free plan's 5/s (helix-authz's over_limit decisions).
	free := o.clients["free"]
	waitFor(t, "a request over the free plan", 30*time.Second, o.proc(helixstack.Authz), func(context.Context) error {
		if b := o.restBurst(t, https, free.token, 8); b.limited == 0 {
			return fmt.Errorf("none limited: %v", b)
		}
		return nil
	})
	// Redis down: helix-authz counts the failure (result="error"; the
	// gateway fails open).
	o.stopRedis(t)
	if b := o.restBurst(t, https, free.token, 2); b.ok != 2 {
		t.Fatalf("with Redis down, failing open: %v", b)
	}
	o.startRedis(t)
	// A request the worker's queue times out.
	code, body, err := (&stack{gateway: addr(o.workerHTTP)}).restInferPlain(ctx, queuedModel)
	if err != nil || code == http.StatusOK {
		t.Fatalf("%s: %d %s (%v), want its queue to time it out", queuedModel, code, body, err)
	}
	// A refused token request.
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.issuer+"/oauth2/token", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(all.id, "wrong-secret")
	resp, err := o.authzTLS.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token with a wrong secret: %s, want 401", resp.Status)
	}
}

// restInferPlain posts the sample request for model to a worker's plain
// HTTP port (s.gateway).
func (s *stack) restInferPlain(ctx context.Context, model string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+s.gateway+wire.RESTModelPath(model, "", "infer"), bytes.NewReader(samplemodel.RESTBody()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// --- the catalogue ---

// catalogueEntry is one line of alerts/metrics.txt.
type catalogueEntry struct {
	process, name, typ string
	// when names the condition under which the process exports the metric
	// ("" = always, once counted).
	when string
}

func (e catalogueEntry) String() string {
	s := e.process + " " + e.name + " " + e.typ
	if e.when != "" {
		s += " when=" + e.when
	}
	return s
}

// conditions a catalogue entry may carry: the folder whose Go source must
// spell the name when the condition does not hold here.
var conditions = map[string]string{
	// GPU metrics (dcgm-exporter's and Triton's names): scraped on a host
	// with an NVIDIA GPU.
	"gpu": "workers",
	// Response cache metrics (Triton's nv_cache_*): exported once a model
	// that enables response_cache is asked, on a worker started with
	// --response-cache-bytes (tests/interop/test_warmup_cache.py).
	"cache": "workers",
	// Rollout metrics: labelled by model, exported once helix-xds's
	// controller has seen a rollout of it.
	"rollout": "xds/rollout",
	// A traffic policy that cannot apply now (labelled by model and
	// reason): exported only while one is not applied.
	"traffic": "xds/builder",
}

var catalogueLine = regexp.MustCompile(`^(\S+) ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)( when=([a-z]+))?$`)

func readCatalogue(path string) ([]catalogueEntry, []string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var (
		entries []catalogueEntry
		header  []string
		seen    = map[string]int{}
	)
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.HasPrefix(line, "#") || line == "" {
			if len(entries) == 0 {
				header = append(header, line)
			}
			continue
		}
		m := catalogueLine.FindStringSubmatch(line)
		if m == nil {
			return nil, nil, fmt.Errorf("%s:%d: want `process name type [when=condition]`, got %q", path, i+1, line)
		}
		e := catalogueEntry{process: m[1], name: m[2], typ: m[3], when: m[5]}
		if _, ok := conditions[e.when]; e.when != "" && !ok {
			return nil, nil, fmt.Errorf("%s:%d: unknown condition %q", path, i+1, e.when)
		}
		key := e.process + " " + e.name
		if prev, dup := seen[key]; dup {
			return nil, nil, fmt.Errorf("%s:%d: %s already listed on line %d", path, i+1, key, prev)
		}
		seen[key] = i + 1
		entries = append(entries, e)
	}
	return entries, header, nil
}

// scrapeFamilies reads a Prometheus text exposition: family name -> type.
func scrapeFamilies(ctx context.Context, u string) (map[string]string, error) {
	body, err := httpGet(ctx, http.DefaultClient, u)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no metric families", u)
	}
	return out, nil
}

func (o *observedStack) scrape(t *testing.T) map[string]map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := map[string]map[string]string{}
	for _, p := range slices.Sorted(maps.Keys(o.metrics)) {
		fams, err := scrapeFamilies(ctx, o.metrics[p])
		if err != nil {
			t.Fatalf("scrape %s: %v", p, err)
		}
		out[p] = fams
	}
	return out
}

// ownProcess: the processes built here, whose every exported name is
// catalogued. Of what Envoy exports, hundreds of names that vary with its
// version and with what happened, only those the rules and dashboards use
// are.
func ownProcess(p string) bool { return p != procEnvoy }

// referencedNames are the identifiers in the rule files and dashboards,
// with histogram and summary suffixes also cut off: a superset of the
// metric names they use (grafana's test parses the expressions properly).
func referencedNames(t *testing.T) map[string]bool {
	t.Helper()
	var files []string
	for _, pattern := range []string{"alerts/rules/*.yml", "grafana/dashboards/*.json"} {
		m, _ := filepath.Glob(filepath.Join(repoRoot, pattern))
		files = append(files, m...)
	}
	ident := regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	out := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ident.FindAllString(string(b), -1) {
			out[id] = true
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(id, suffix); ok {
					out[base] = true
				}
			}
		}
	}
	return out
}

func (o *observedStack) checkCatalogue(t *testing.T) {
	path := filepath.Join(repoRoot, metricsCatalogue)
	entries, header, err := readCatalogue(path)
	if err != nil && !(*updateMetrics && errors.Is(err, fs.ErrNotExist)) {
		t.Fatal(err)
	}
	var scraped map[string]map[string]string
	// The xDS push latency and publish counters need Envoy's ACKs, which
	// come shortly after it goes LIVE.
	waitFor(t, "the counters of the traffic", 40*time.Second, nil, func(context.Context) error {
		scraped = o.scrape(t)
		for _, n := range []struct{ proc, name string }{
			{procXDS, "helix_xds_push_latency_seconds"}, {procXDS, "helix_xds_publishes_total"},
		} {
			if _, ok := scraped[n.proc][n.name]; !ok {
				return fmt.Errorf("%s: %s not exported yet", n.proc, n.name)
			}
		}
		return nil
	})
	if *updateMetrics {
		entries = updatedCatalogue(t, entries, scraped)
		var b strings.Builder
		for _, h := range header {
			b.WriteString(h + "\n")
		}
		for _, e := range entries {
			b.WriteString(e.String() + "\n")
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d names)", metricsCatalogue, len(entries))
		return
	}
	if len(entries) == 0 {
		t.Fatalf("%s lists no metric", metricsCatalogue)
	}
	listed := map[string]catalogueEntry{}
	perProcess := map[string]int{}
	for _, e := range entries {
		listed[e.process+" "+e.name] = e
		perProcess[e.process]++
	}
	fix := "; run `go test ./e2e -run TestObservability -update-metrics` and review the diff"
	// Every scraped process is catalogued, and every name a HelixFlow
	// process exports is listed with its type.
	for p, fams := range scraped {
		if perProcess[p] == 0 {
			t.Errorf("%s lists nothing of %s%s", metricsCatalogue, p, fix)
		}
		for name, typ := range fams {
			e, ok := listed[p+" "+name]
			switch {
			case ok && e.typ != typ:
				t.Errorf("%s exports %s as a %s; %s says %s%s", p, name, typ, metricsCatalogue, e.typ, fix)
			case !ok && ownProcess(p):
				t.Errorf("%s exports %s (%s), not in %s%s", p, name, typ, metricsCatalogue, fix)
			}
		}
	}
	// Every listed name is exported: scraped here, or, when its condition
	// does not hold on this machine, spelled in the source it comes from.
	for _, e := range entries {
		if _, ok := scraped[e.process][e.name]; ok {
			continue
		}
		if e.when == "" {
			t.Errorf("%s lists %s, which %s does not export%s", metricsCatalogue, e.name, e.process, fix)
			continue
		}
		if err := spelledInSource(e); err != nil {
			t.Errorf("%s: %v", metricsCatalogue, err)
		}
	}
}

// updatedCatalogue lists what each own process exports now, and what
// Envoy exports that the rules and dashboards name;
// conditional entries that cannot be seen here are kept.
func updatedCatalogue(t *testing.T, old []catalogueEntry, scraped map[string]map[string]string) []catalogueEntry {
	t.Helper()
	var out []catalogueEntry
	have := map[string]bool{}
	for _, e := range old {
		typ, ok := scraped[e.process][e.name]
		switch {
		case ok && (ownProcess(e.process) || e.when != ""):
			e.typ = typ
		case !ok && e.when != "":
		default:
			continue // re-derived below, or gone
		}
		out = append(out, e)
		have[e.process+" "+e.name] = true
	}
	used := referencedNames(t)
	for p, fams := range scraped {
		for name, typ := range fams {
			if !have[p+" "+name] && (ownProcess(p) || used[name]) {
				out = append(out, catalogueEntry{process: p, name: name, typ: typ})
			}
		}
	}
	slices.SortFunc(out, func(a, b catalogueEntry) int {
		return strings.Compare(a.process+" "+a.name, b.process+" "+b.name)
	})
	return out
}

// spelledInSource finds a conditional name as a quoted string in the Go
// source its condition points at.
func spelledInSource(e catalogueEntry) error {
	root := filepath.Join(repoRoot, conditions[e.when])
	quoted := []byte(`"` + e.name + `"`)
	found := false
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || found || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		found = err == nil && bytes.Contains(b, quoted)
		return err
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%s (when=%s): %s did not export it and no Go source under %s spells it", e.name, e.when, e.process, root)
	}
	return nil
}

func newPool(t *testing.T, pem []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		t.Fatal("CA certificate: no PEM")
	}
	return p
}

// --- Prometheus and Alertmanager ---

// Test-only timings: the rule's `for` and Alertmanager's group_wait are
// shortened so that the page comes within seconds; the rule's expression,
// labels and annotations are the real ones.
const (
	scrapeInterval = time.Second
	workerDownFor  = 3 * time.Second
	groupWait      = time.Second
)

// requireTool finds the first of names on PATH; without any it skips the
// test, or fails it when CI=true.
func requireTool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	testdeps.Missing(t, "none of %v found: run make deps (Debian's prometheus and prometheus-alertmanager)", names)
	return ""
}

// webhook is a test Alertmanager receiver.
type webhook struct {
	*httptest.Server
	mu       sync.Mutex
	received []webhookAlert
	arrived  chan struct{}
}

type webhookAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	at          time.Time
}

func newWebhook(t *testing.T) *webhook {
	t.Helper()
	w := &webhook{arrived: make(chan struct{}, 100)}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var msg struct {
			Alerts []webhookAlert `json:"alerts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
			t.Errorf("webhook: %v", err)
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		now := time.Now()
		w.mu.Lock()
		for _, a := range msg.Alerts {
			a.at = now
			w.received = append(w.received, a)
		}
		w.mu.Unlock()
		select {
		case w.arrived <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *webhook) alerts() []webhookAlert {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.received)
}

// promQuery runs an instant query against Prometheus's HTTP API.
func promQuery(ctx context.Context, base, path string, v any) error {
	body, err := httpGet(ctx, http.DefaultClient, base+path)
	if err != nil {
		return err
	}
	var resp struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return err
	}
	if resp.Status != "success" {
		return fmt.Errorf("%s: %s", path, resp.Error)
	}
	return json.Unmarshal(resp.Data, v)
}

// writeRules copies alerts/rules into dir, with HelixWorkerDown's `for`
// shortened.
func writeRules(t *testing.T, dir string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repoRoot, "alerts", "rules", "*.yml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("alerts/rules: %v %v", paths, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if setFor(&doc, "HelixWorkerDown", workerDownFor.String()) {
			found = true
			if b, err = yaml.Marshal(&doc); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "rules", filepath.Base(p)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !found {
		t.Fatal("alerts/rules has no HelixWorkerDown alert")
	}
}

// setFor sets the `for` of the alerting rule named alert, wherever it is
// in the document.
func setFor(n *yaml.Node, alert, d string) bool {
	if n.Kind == yaml.MappingNode {
		isAlert := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "alert" && n.Content[i+1].Value == alert {
				isAlert = true
			}
		}
		if isAlert {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "for" {
					n.Content[i+1].Value = d
					return true
				}
			}
		}
	}
	for _, c := range n.Content {
		if setFor(c, alert, d) {
			return true
		}
	}
	return false
}

// writePrometheusConfig writes alerts/prometheus.yml with test intervals
// and the stack's targets.
func writePrometheusConfig(t *testing.T, dir string, targets map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "alerts", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		t.Fatal("alerts/prometheus.yml: no global section")
	}
	global["scrape_interval"], global["evaluation_interval"], global["scrape_timeout"] = scrapeInterval.String(), scrapeInterval.String(), scrapeInterval.String()
	if b, err = yaml.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "targets"), 0o755); err != nil {
		t.Fatal(err)
	}
	for job, hostport := range targets {
		j, _ := json.Marshal([]map[string]any{{"targets": []string{hostport}}})
		if err := os.WriteFile(filepath.Join(dir, "targets", job+".json"), j, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// checkWorkerDownAlert: Prometheus (alerts/prometheus.yml and the real
// rules) scrapes every process of the stack with no rule failing and no
// alert but the test certificates' expiry; then the worker is killed, the
// page reaches Alertmanager's webhook within the rule's `for` plus
// grouping, and its models are seen unavailable.
func (o *observedStack) checkWorkerDownAlert(t *testing.T) {
	promBin := requireTool(t, "prometheus")
	amBin := requireTool(t, "prometheus-alertmanager", "alertmanager")
	dir := t.TempDir()
	hook := newWebhook(t)

	amPort, promPort := freePort(t), freePort(t)
	amConfig := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(amConfig, []byte(fmt.Sprintf(`route:
  receiver: test
  group_by: [alertname]
  group_wait: %s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: %s
        send_resolved: false
`, groupWait, hook.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	am := o.startProc(t, "alertmanager", amBin, "--config.file="+amConfig, "--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+addr(amPort), "--cluster.listen-address=", "--log.level=warn")

	writeRules(t, dir)
	writePrometheusConfig(t, dir, map[string]string{
		"helix-worker": hostOf(t, o.metrics[procWorker]), "helix-authz": hostOf(t, o.metrics[procAuthz]),
		"helix-xds": hostOf(t, o.metrics[procXDS]), "envoy": hostOf(t, o.metrics[procEnvoy]), "alertmanager": addr(amPort), "prometheus": addr(promPort),
	})
	prom := o.startProc(t, "prometheus", promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+addr(promPort), "--log.level=warn")
	promURL := "http://" + addr(promPort)
	for _, p := range []struct {
		proc *supervise.Proc
		url  string
	}{{am, "http://" + addr(amPort)}, {prom, promURL}} {
		waitFor(t, p.proc.Name()+" ready", 30*time.Second, p.proc, func(ctx context.Context) error {
			_, err := httpGet(ctx, http.DefaultClient, p.url+"/-/ready")
			return err
		})
	}

	// Every target up, every rule evaluated without error.
	waitFor(t, "every target up and every rule evaluated", 30*time.Second, prom, func(ctx context.Context) error {
		var up struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		}
		if err := promQuery(ctx, promURL, "/api/v1/query?query=up", &up); err != nil {
			return err
		}
		if len(up.Result) != 6 {
			return fmt.Errorf("%d targets scraped, want 6", len(up.Result))
		}
		for _, r := range up.Result {
			if r.Value[1] != "1" {
				return fmt.Errorf("%s down", r.Metric["job"])
			}
		}
		var rules struct {
			Groups []struct {
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := promQuery(ctx, promURL, "/api/v1/rules", &rules); err != nil {
			return err
		}
		n := 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				n++
				if r.Health == "err" {
					t.Fatalf("rule %s fails on the live stack: %s", r.Name, r.LastError)
				}
				if r.Health != "ok" {
					return fmt.Errorf("rule %s not evaluated yet (%s)", r.Name, r.Health)
				}
			}
		}
		if n == 0 {
			return errors.New("no rules loaded")
		}
		return nil
	})
	// The healthy stack raises nothing but the test certificates' expiry
	// (they last a day), seen through Envoy's real certificate stats and
	// the servers' own gauges.
	certAlerts := []string{
		"HelixCertificateExpiringSoon", "HelixCertificateExpiryImminent",
		"HelixServerCertificateExpiringSoon", "HelixServerCertificateExpiryImminent",
	}
	waitFor(t, "the certificate alerts pending", 20*time.Second, prom, func(ctx context.Context) error {
		var active struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		}
		if err := promQuery(ctx, promURL, "/api/v1/alerts", &active); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, a := range active.Alerts {
			name := a.Labels["alertname"]
			if !slices.Contains(certAlerts, name) {
				t.Fatalf("the healthy stack raised %s (%s): %v", name, a.State, a.Labels)
			}
			seen[name] = true
		}
		for _, name := range certAlerts {
			if !seen[name] {
				return fmt.Errorf("certificate alerts: %v", seen)
			}
		}
		return nil
	})

	// Kill the worker; the page must arrive within the rule's `for` plus
	// grouping, plus a scrape and an evaluation to notice and one more of
	// each for timing slack.
	workerInstance := hostOf(t, o.metrics[procWorker])
	if err := o.st.KillProcess(procWorker); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	bound := workerDownFor + groupWait + 4*scrapeInterval + 5*time.Second
	deadline := time.After(bound + 10*time.Second)
	for {
		var page *webhookAlert
		for _, a := range hook.alerts() {
			if a.Labels["alertname"] != "HelixWorkerDown" {
				t.Fatalf("Alertmanager delivered %v, not the worker-down page", a.Labels)
			}
			page = &a
		}
		if page != nil {
			took := page.at.Sub(killed)
			t.Logf("HelixWorkerDown delivered %v after the kill (for %v, group_wait %v)", took.Round(time.Millisecond), workerDownFor, groupWait)
			if took > bound {
				t.Errorf("delivered after %v, want at most %v", took, bound)
			}
			if page.Status != "firing" || page.Labels["job"] != procWorker || page.Labels["instance"] != workerInstance ||
				page.Labels["severity"] != "warning" || page.Labels["team"] != "inference" {
				t.Errorf("page: status %s, labels %v", page.Status, page.Labels)
			}
			if want := "helix-worker " + workerInstance + " is down"; page.Annotations["summary"] != want {
				t.Errorf("summary %q, want %q", page.Annotations["summary"], want)
			}
			break
		}
		select {
		case <-hook.arrived:
		case <-deadline:
			t.Fatalf("no page %v after the worker was killed", time.Since(killed).Round(time.Millisecond))
		}
	}

	// The worker was the models' only one: Envoy's pools empty (health
	// checks) or vanish (lease lapsed), and HelixModelUnavailable sees it
	// on Envoy's real stats (pending: its `for` is the real one).
	waitFor(t, "HelixModelUnavailable pending for the models", 30*time.Second, prom, func(ctx context.Context) error {
		var active struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		if err := promQuery(ctx, promURL, "/api/v1/alerts", &active); err != nil {
			return err
		}
		models := map[string]bool{}
		for _, a := range active.Alerts {
			if a.Labels["alertname"] == "HelixModelUnavailable" {
				models[a.Labels["model"]] = true
			}
		}
		if !models[sampleModel] || !models[queuedModel] {
			return fmt.Errorf("HelixModelUnavailable for %v", models)
		}
		return nil
	})
}
