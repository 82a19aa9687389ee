package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	"go.yaml.in/yaml/v3"
)

// TestCheckedInJSONIsCurrent: dashboards/ holds exactly what the Go code
// makes (regenerate with `make dashboards`).
func TestCheckedInJSONIsCurrent(t *testing.T) {
	files, err := render()
	if err != nil {
		t.Fatal(err)
	}
	onDisk, _ := filepath.Glob("dashboards/*.json")
	if len(onDisk) != len(files) {
		t.Errorf("dashboards/ holds %d files, the code makes %d: run make dashboards", len(onDisk), len(files))
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join("dashboards", name))
		if err != nil {
			t.Errorf("%v: run make dashboards", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("dashboards/%s differs from what the Go code makes: run make dashboards", name)
		}
	}
}

// TestJSONReadsBack: the SDK reads each file back into a dashboard with
// the panels and queries it was built from.
func TestJSONReadsBack(t *testing.T) {
	// The dashboards' panel and query types only: cog/plugins would
	// register (and compile) the whole SDK.
	rt := cog.NewRuntime()
	rt.RegisterPanelcfgVariant(stat.VariantConfig())
	rt.RegisterPanelcfgVariant(timeseries.VariantConfig())
	rt.RegisterDataqueryVariant(prometheus.VariantConfig())
	for name, build := range builders {
		b, err := os.ReadFile(filepath.Join("dashboards", name))
		if err != nil {
			t.Fatal(err)
		}
		var got dashboard.Dashboard
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, err := build().Build()
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Panels) != len(want.Panels) || got.Uid == nil || *got.Uid != *want.Uid {
			t.Errorf("%s: read back %d panels, uid %v; built %d, uid %s", name, len(got.Panels), got.Uid, len(want.Panels), *want.Uid)
		}
		queries := 0
		for _, p := range got.Panels {
			if p.Panel == nil {
				continue
			}
			for _, tg := range p.Panel.Targets {
				if pq, ok := tg.(*prometheus.Dataquery); !ok || pq.Expr == "" {
					t.Errorf("%s: panel %v: target %T is not a Prometheus query", name, p.Panel.Title, tg)
				}
				queries++
			}
		}
		if queries == 0 {
			t.Errorf("%s: no queries read back", name)
		}
	}
}

// panelQuery is one PromQL expression of a dashboard.
type panelQuery struct {
	where string // dashboard, panel, query
	expr  string
}

// dashboardQueries reads a dashboard's JSON as Grafana does and returns
// every panel target's expression and every query variable's metric.
func dashboardQueries(t *testing.T, path string) (panels int, out []panelQuery) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string      `json:"uid"`
		Title      string      `json:"title"`
		Panels     []jsonPanel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: uid %q, title %q", path, d.UID, d.Title)
	}
	base := filepath.Base(path)
	var walk func(ps []jsonPanel)
	walk = func(ps []jsonPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			panels++
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", base, p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("%s: panel %q: query %s is empty", base, p.Title, tg.RefID)
				}
				out = append(out, panelQuery{where: base + ": " + p.Title + " (" + tg.RefID + ")", expr: tg.Expr})
			}
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		s, _ := v.Query.(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("%s: variable %s: query %q is not label_values(metric, label)", base, v.Name, s)
			continue
		}
		out = append(out, panelQuery{where: base + ": variable " + v.Name, expr: m[1]})
	}
	return panels, out
}

type jsonPanel struct {
	Type    string      `json:"type"`
	Title   string      `json:"title"`
	Panels  []jsonPanel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func loadNames(t *testing.T) (*names, []ruleExpr) {
	t.Helper()
	n, err := readCatalogue(cataloguePath)
	if err != nil {
		t.Fatal(err)
	}
	// Not vacuous: every process is catalogued.
	for _, p := range []string{"helix-worker", "helix-authz", "helix-xds", "envoy"} {
		if n.processes[p] == 0 {
			t.Fatalf("%s lists nothing of %s", cataloguePath, p)
		}
	}
	rules, err := readRules(n, rulesGlob)
	if err != nil {
		t.Fatal(err)
	}
	return n, rules
}

// TestDashboardQueriesUseExportedMetrics parses every panel's PromQL with
// Prometheus's parser: each metric it names is in the catalogue of what
// HelixFlow's processes and Envoy export, or a recording rule's output.
func TestDashboardQueriesUseExportedMetrics(t *testing.T) {
	n, _ := loadNames(t)
	paths, _ := filepath.Glob("dashboards/*.json")
	if len(paths) != len(builders) {
		t.Fatalf("dashboards: %v", paths)
	}
	checked := 0
	for _, p := range paths {
		panels, qs := dashboardQueries(t, p)
		if panels < 8 {
			t.Errorf("%s: %d panels", p, panels)
		}
		for _, pq := range qs {
			used, err := n.check(pq.expr)
			if err != nil {
				t.Errorf("%s: %v\n\t%s", pq.where, err, pq.expr)
				continue
			}
			if len(used) == 0 {
				t.Errorf("%s: selects no metric: %s", pq.where, pq.expr)
			}
			checked += len(used)
		}
	}
	if checked == 0 {
		t.Fatal("no metric name checked")
	}
}

// TestRulesUseExportedMetrics holds alerts/rules to the same names.
func TestRulesUseExportedMetrics(t *testing.T) {
	n, rules := loadNames(t)
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	for _, r := range rules {
		used, err := n.check(r.expr)
		if err != nil {
			t.Errorf("%s: %v", r.where, err)
		}
		if len(used) == 0 {
			t.Errorf("%s selects no metric", r.where)
		}
	}
}

// TestCheckFindsWhatIsWrong: the check is not vacuous.
func TestCheckFindsWhatIsWrong(t *testing.T) {
	n, _ := loadNames(t)
	for _, c := range []struct {
		expr string
		want error // nil: any parse error
	}{
		{`rate(helix_made_up_total[5m])`, ErrUnknownMetric},
		{`sum(rate(nv_inference_count[5m])) / sum(rate(nv_inference_counts[5m]))`, ErrUnknownMetric},
		{`helix_authz_check_duration_seconds`, ErrUnknownMetric},           // a histogram has no plain series
		{`rate(helix_authz_checks_total_bucket[5m])`, ErrUnknownMetric},    // nor a counter buckets
		{`{job="helix-worker"}`, ErrNoMetricName},                          // would escape the check
		{`sum(rate(nv_inference_count[$__rate_interval])`, nil},            // unbalanced
		{`histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))`, nil}, // unbalanced and unknown
	} {
		_, err := n.check(c.expr)
		switch {
		case err == nil:
			t.Errorf("%s: accepted", c.expr)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: %v, want %v", c.expr, err, c.want)
		}
	}
	for _, ok := range []string{
		`histogram_quantile(0.99, sum by (le) (rate(helix_authz_check_duration_seconds_bucket[$__rate_interval])))`,
		`model:envoy_upstream_requests:rate5m{model=~"$model"}`,
		`up{job="helix-worker"}`,
		`{__name__="nv_inference_count"}`,
	} {
		if _, err := n.check(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// TestProvisioning: the provisioning files point Grafana at these
// dashboards and at a Prometheus data source of the uid and type the
// dashboards' data source variable selects.
func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL string
			Access               string         `yaml:"access"`
			IsDefault            bool           `yaml:"isDefault"`
			Editable             bool           `yaml:"editable"`
			JSONData             map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	readStrictYAML(t, "provisioning/datasources/prometheus.yml", &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].UID == "" || ds.Datasources[0].URL == "" {
		t.Errorf("datasources: %+v", ds)
	}
	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Folder, Type string
			DisableDeletion    bool `yaml:"disableDeletion"`
			AllowUIUpdates     bool `yaml:"allowUiUpdates"`
			UpdateInterval     int  `yaml:"updateIntervalSeconds"`
			Options            struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readStrictYAML(t, "provisioning/dashboards/helixflow.yml", &dp)
	if dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" || !filepath.IsAbs(dp.Providers[0].Options.Path) {
		t.Errorf("dashboard providers: %+v", dp)
	}
	// Every dashboard selects its data source through the variable, whose
	// type is the provisioned one.
	for name := range builders {
		b, err := os.ReadFile(filepath.Join("dashboards", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(`"uid": "${datasource}"`)) || !bytes.Contains(b, []byte(`"query": "prometheus"`)) {
			t.Errorf("%s: panels do not use the ${datasource} variable of type prometheus", name)
		}
	}
}

func readStrictYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// The latency panels over histograms with trace-id exemplars show them,
// and the provisioned Prometheus data source links an exemplar's trace_id
// to the provisioned Jaeger data source.
func TestExemplarsLinkToJaeger(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL string
			Access               string `yaml:"access"`
			Editable             bool   `yaml:"editable"`
		} `yaml:"datasources"`
	}
	readStrictYAML(t, "provisioning/datasources/jaeger.yml", &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "jaeger" || ds.Datasources[0].UID != "jaeger" || ds.Datasources[0].URL == "" {
		t.Fatalf("jaeger data source: %+v", ds)
	}
	b, err := os.ReadFile("provisioning/datasources/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		Datasources []struct {
			JSONData struct {
				Destinations []struct {
					Name          string `yaml:"name"`
					DatasourceUID string `yaml:"datasourceUid"`
				} `yaml:"exemplarTraceIdDestinations"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &prom); err != nil {
		t.Fatal(err)
	}
	if d := prom.Datasources[0].JSONData.Destinations; len(d) != 1 || d[0].Name != "trace_id" || d[0].DatasourceUID != ds.Datasources[0].UID {
		t.Errorf("prometheus exemplarTraceIdDestinations = %+v, want trace_id to uid %s", d, ds.Datasources[0].UID)
	}
	for file, titles := range map[string][]string{
		"inference.json": {"p99 queue and compute time", "Request latency in the worker"},
		"auth.json":      {"Check latency"},
	} {
		b, err := os.ReadFile(filepath.Join("dashboards", file))
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Exemplar bool `json:"exemplar"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		for _, title := range titles {
			found := false
			for _, p := range d.Panels {
				if p.Title != title {
					continue
				}
				found = true
				for _, tg := range p.Targets {
					if tg.Exemplar {
						continue
					}
					t.Errorf("%s: %q has a query without exemplars", file, title)
				}
			}
			if !found {
				t.Errorf("%s: no panel %q", file, title)
			}
		}
	}
}
