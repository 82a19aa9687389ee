// Package alerts holds no Go code: these tests check the Prometheus and
// Alertmanager files beside them with the real promtool and amtool
// (Debian's prometheus and prometheus-alertmanager packages). Without the
// tools they are skipped, or fail when CI=true.
package alerts

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/helixflow/helixflow/internal/testdeps"
)

// tool finds a binary on PATH.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testdeps.Missing(t, "%s not found: run make deps (Debian's prometheus and prometheus-alertmanager)", name)
	}
	return p
}

// run runs a tool and returns its combined output and whether it exited 0.
func run(t *testing.T, name string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return out.String(), err == nil
}

func TestChecksPass(t *testing.T) {
	tests, _ := filepath.Glob("tests/*_test.yml")
	if len(tests) == 0 {
		t.Fatal("no promtool tests in tests/")
	}
	for _, c := range []struct {
		tool string
		args []string
	}{
		{"promtool", []string{"check", "config", "prometheus.yml"}},
		{"promtool", append([]string{"test", "rules"}, tests...)},
		{"amtool", []string{"check-config", "alertmanager.yml", "alertmanager.local.yml"}},
	} {
		t.Run(c.tool+" "+c.args[0], func(t *testing.T) {
			if out, ok := run(t, c.tool, c.args...); !ok || strings.Contains(out, "WARNING") {
				t.Fatalf("%s %s:\n%s", c.tool, strings.Join(c.args, " "), out)
			}
		})
	}
}

// ruleFile is the part of a Prometheus rule file the coverage check reads.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Record string            `yaml:"record"`
			Expr   string            `yaml:"expr"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// testFile is the part of a promtool test file the coverage check reads.
type testFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name  string `yaml:"name"`
		Exprs []struct {
			Expr string `yaml:"expr"`
		} `yaml:"promql_expr_test"`
		Alerts []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestEveryRuleIsTested: each alert has a promtool case where it fires and
// one where it does not; each recording rule's output is checked by a
// promql_expr_test; each rule file is tested. Alerts carry the labels
// Alertmanager routes on.
func TestEveryRuleIsTested(t *testing.T) {
	rulePaths, _ := filepath.Glob("rules/*.yml")
	testPaths, _ := filepath.Glob("tests/*_test.yml")
	if len(rulePaths) == 0 || len(testPaths) == 0 {
		t.Fatalf("rules %v, tests %v", rulePaths, testPaths)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	var exprs []string
	testedFiles := map[string]bool{}
	for _, p := range testPaths {
		var tf testFile
		readYAML(t, p, &tf)
		for _, rf := range tf.RuleFiles {
			testedFiles[filepath.Clean(filepath.Join(filepath.Dir(p), rf))] = true
		}
		for _, tc := range tf.Tests {
			for _, e := range tc.Exprs {
				exprs = append(exprs, e.Expr)
			}
			for _, a := range tc.Alerts {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	var alerts, records int
	severities := []string{"critical", "warning"}
	teams := []string{"inference", "platform", "auth"}
	for _, p := range rulePaths {
		if !testedFiles[filepath.Clean(p)] {
			t.Errorf("%s: no test file lists it in rule_files", p)
		}
		var rf ruleFile
		readYAML(t, p, &rf)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				switch {
				case r.Alert != "":
					alerts++
					if !fires[r.Alert] {
						t.Errorf("%s: alert %s has no test case in which it fires", p, r.Alert)
					}
					if !quiet[r.Alert] {
						t.Errorf("%s: alert %s has no test case in which it stays quiet", p, r.Alert)
					}
					if !slices.Contains(severities, r.Labels["severity"]) || !slices.Contains(teams, r.Labels["team"]) {
						t.Errorf("%s: alert %s: severity %q, team %q; Alertmanager routes on severity %v and team %v",
							p, r.Alert, r.Labels["severity"], r.Labels["team"], severities, teams)
					}
				case r.Record != "":
					records++
					name := regexp.MustCompile(`(^|[^a-zA-Z0-9_:])` + regexp.QuoteMeta(r.Record) + `($|[^a-zA-Z0-9_:])`)
					if !slices.ContainsFunc(exprs, name.MatchString) {
						t.Errorf("%s: recording rule %s is checked by no promql_expr_test", p, r.Record)
					}
				}
			}
		}
	}
	if alerts == 0 || records == 0 {
		t.Fatalf("found %d alerts and %d recording rules", alerts, records)
	}
}

// TestRoutes: who hears about what, through Alertmanager's own routing.
func TestRoutes(t *testing.T) {
	for _, c := range []struct {
		labels    []string
		receivers string
	}{
		{[]string{"severity=critical", "team=inference"}, "pagerduty-inference,slack-inference"},
		{[]string{"severity=warning", "team=inference"}, "slack-inference"},
		{[]string{"severity=critical", "team=platform"}, "pagerduty-platform,slack-platform"},
		{[]string{"severity=warning", "team=platform"}, "slack-platform"},
		{[]string{"severity=critical", "team=auth"}, "pagerduty-auth,email-auth"},
		{[]string{"severity=warning", "team=auth"}, "email-auth"},
		{[]string{"severity=critical", "team=unknown"}, "webhook"},
		{[]string{"alertname=Watchdog"}, "webhook"},
	} {
		t.Run(strings.Join(c.labels, ","), func(t *testing.T) {
			args := append([]string{"config", "routes", "test", "--config.file=alertmanager.yml", "--verify.receivers=" + c.receivers}, c.labels...)
			if out, ok := run(t, "amtool", args...); !ok {
				t.Fatalf("want %s:\n%s", c.receivers, out)
			}
		})
	}
}

// TestBadInputNamesTheLine breaks the real files one way at a time: each
// check fails and names the line. (A well-formed field with a bad value,
// such as a duration or a matcher, is reported by promtool and amtool with
// the value but without the line.)
func TestBadInputNamesTheLine(t *testing.T) {
	for _, c := range []struct {
		name string
		file string // copied into a temporary folder, with its rules/
		// old is replaced by new; the check must name the line of old.
		old, new string
		tool     string
		args     func(path string) []string
		want     func(path string, line int) string
	}{
		{
			name: "rule with a bad expression", file: "rules/inference.yml",
			old: `expr: up{job="helix-worker"} == 0`, new: `expr: up{job="helix-worker" == 0`,
			tool: "promtool", args: func(p string) []string { return []string{"check", "rules", p} },
			want: func(p string, line int) string { return fmt.Sprintf("%s: %d:", p, line) },
		},
		{
			name: "rule with an unknown field", file: "rules/gateway.yml",
			old: "        for: 2m\n", new: "        fore: 2m\n",
			tool: "promtool", args: func(p string) []string { return []string{"check", "rules", p} },
			want: func(_ string, line int) string { return fmt.Sprintf("line %d: field fore not found", line) },
		},
		{
			name: "rule with a bad duration (the value named)", file: "rules/auth.yml",
			old: "        for: 10m\n", new: "        for: ten minutes\n",
			tool: "promtool", args: func(p string) []string { return []string{"check", "rules", p} },
			want: func(string, int) string { return `not a valid duration string: "ten minutes"` },
		},
		{
			name: "rule file that is not YAML", file: "rules/platform.yml",
			old: "(increase(helix_xds_nacks_total[5m])) > 0\n", new: "(increase(helix_xds_nacks_total[5m])) > 0: 1\n",
			tool: "promtool", args: func(p string) []string { return []string{"check", "rules", p} },
			want: func(_ string, line int) string {
				return fmt.Sprintf("yaml: line %d: mapping values are not allowed", line)
			},
		},
		{
			name: "Prometheus config with an unknown field", file: "prometheus.yml",
			old: "  scrape_interval: 15s\n", new: "  scrape_intervall: 15s\n",
			tool: "promtool", args: func(p string) []string { return []string{"check", "config", p} },
			want: func(_ string, line int) string { return fmt.Sprintf("line %d: field scrape_intervall not found", line) },
		},
		{
			name: "Alertmanager config with a bad matcher (the value named)", file: "alertmanager.yml",
			old: `- matchers: [team="platform"]`, new: `- matchers: [team=="platform"]`,
			tool: "amtool", args: func(p string) []string { return []string{"check-config", p} },
			want: func(string, int) string { return `matcher value contains unescaped double quote: ="platform"` },
		},
		{
			name: "Alertmanager config with a misspelt field", file: "alertmanager.yml",
			old: "  repeat_interval: 4h\n", new: "  repeat_intervall: 4h\n",
			tool: "amtool", args: func(p string) []string { return []string{"check-config", p} },
			want: func(_ string, line int) string { return fmt.Sprintf("line %d: field repeat_intervall not found", line) },
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, ".", dir)
			path := filepath.Join(dir, c.file)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(b, []byte(c.old))
			if i < 0 || bytes.Count(b, []byte(c.old)) != 1 {
				t.Fatalf("%s: %q is not there exactly once", c.file, c.old)
			}
			line := bytes.Count(b[:i], []byte("\n")) + 1
			if err := os.WriteFile(path, bytes.Replace(b, []byte(c.old), []byte(c.new), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			out, ok := run(t, c.tool, c.args(path)...)
			if ok {
				t.Fatalf("%s accepted the broken file:\n%s", c.tool, out)
			}
			if want := c.want(path, line); !strings.Contains(out, want) {
				t.Fatalf("output does not say %q (the change is on line %d):\n%s", want, line, out)
			}
		})
	}
}

// copyTree copies the checked files (rules, config, targets) to dir.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	for _, pattern := range []string{"*.yml", "rules/*.yml", "targets/*.json"} {
		paths, _ := filepath.Glob(filepath.Join(from, pattern))
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(to, p)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
