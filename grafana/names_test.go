package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// The metric catalogue (../alerts/metrics.txt) is written and verified
// against the running processes by the root module's e2e test
// (TestObservability); here it is what expressions are checked against.
const (
	cataloguePath = "../alerts/metrics.txt"
	rulesGlob     = "../alerts/rules/*.yml"
)

// Errors of the name check.
var (
	ErrUnknownMetric = errors.New("metric not exported by any HelixFlow process or Envoy")
	ErrNoMetricName  = errors.New("selector without a metric name")
	ErrBadCatalogue  = errors.New("bad metric catalogue")
)

// prometheusOwn are series Prometheus makes itself, not any target.
var prometheusOwn = map[string]bool{"up": true}

// names is what an expression may select: exported series names (a
// histogram's _bucket, _sum and _count, a summary's quantiles, _sum and
// _count) and the recording rules' outputs.
type names struct {
	series map[string]string // series name -> where it comes from
	// processes seen in the catalogue, for the non-vacuity check.
	processes map[string]int
}

var catalogueLine = regexp.MustCompile(`^(\S+) ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)( when=[a-z]+)?$`)

func readCatalogue(path string) (*names, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := &names{series: map[string]string{}, processes: map[string]int{}}
	for k := range prometheusOwn {
		n.series[k] = "Prometheus"
	}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		m := catalogueLine.FindStringSubmatch(text)
		if m == nil {
			return nil, fmt.Errorf("%w: %s:%d: want `process name type [when=condition]`, got %q", ErrBadCatalogue, path, line, text)
		}
		proc, name, typ := m[1], m[2], m[3]
		n.processes[proc]++
		n.series[name] = proc
		switch typ {
		case "histogram":
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				n.series[name+s] = proc
			}
			delete(n.series, name) // only its parts are series
		case "summary":
			n.series[name+"_sum"], n.series[name+"_count"] = proc, proc
		}
	}
	return n, sc.Err()
}

// ruleExpr is one expression of a rule file.
type ruleExpr struct {
	where string // file, group and rule
	expr  string
}

// readRules parses the rule files as Prometheus does, adds their recorded
// names to n and returns every rule's expression.
func readRules(n *names, glob string) ([]ruleExpr, error) {
	paths, err := filepath.Glob(glob)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no rule files match %s", glob)
	}
	sort.Strings(paths)
	p := parser.NewParser(parser.Options{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var out []ruleExpr
	for _, path := range paths {
		groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, p, quiet)
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				name := r.Alert
				if r.Record != "" {
					name = r.Record
					n.series[r.Record] = "recording rule in " + filepath.Base(path)
				}
				out = append(out, ruleExpr{where: fmt.Sprintf("%s: group %s: %s", filepath.Base(path), g.Name, name), expr: r.Expr})
			}
		}
	}
	return out, nil
}

// grafanaVar matches a dashboard variable reference: $name, ${name} or
// ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{([a-zA-Z_][a-zA-Z0-9_]*)(:[a-z]+)?\}|\$([a-zA-Z_][a-zA-Z0-9_]*)`)

// substitute replaces Grafana's variables so that the expression parses:
// intervals become a duration, any other variable a regular expression
// (dashboards use them in =~ matchers).
func substitute(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		name := strings.Trim(v, "${}")
		name, _, _ = strings.Cut(name, ":")
		switch name {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		}
		return ".*"
	})
}

// check parses expr with Prometheus's parser and returns the metric names
// it selects, or an error naming each one that is not exported.
func (n *names) check(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(substitute(expr))
	if err != nil {
		return nil, err
	}
	var (
		used []string
		errs []error
	)
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
		}
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("%w: %s", ErrNoMetricName, vs))
		case n.series[name] == "":
			errs = append(errs, fmt.Errorf("%w: %s", ErrUnknownMetric, name))
		default:
			used = append(used, name)
		}
		return nil
	})
	return used, errors.Join(errs...)
}
