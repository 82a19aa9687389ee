package stack

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/workers/repository"
)

// sampleRoot is a repository root holding the committed sample config of
// simple and a stand-in for its generated model file (the worker is not
// run here; the files are only linked).
func sampleRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join("..", "..", "models", "simple", "config.pbtxt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "models", "simple", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "models", "simple", "config.pbtxt"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "models", "simple", "1", "model.onnx"), []byte("onnx"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestMakeRepository(t *testing.T) {
	root := sampleRoot(t)
	for _, tc := range []struct {
		name         string
		m            RepoModel
		model        string
		versions     []int64
		maxBatchSize int32
		policy       string // the parsed version_policy's kind
	}{
		{"the sample as it is", RepoModel{Sample: "simple"}, "simple", []int64{1}, 8, ""},
		{"two versions, both served", RepoModel{Sample: "simple", Versions: []int{1, 2}, Config: "version_policy: { all: {} }"},
			"simple", []int64{1, 2}, 8, "all"},
		{"renamed, batch size replaced", RepoModel{Sample: "simple", Name: "simple_slow", Versions: []int{3}, MaxBatchSize: 1024,
			Config: "dynamic_batching { max_queue_delay_microseconds: 200000 }"}, "simple_slow", []int64{3}, 1024, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := MakeRepository(root, dir, tc.m); err != nil {
				t.Fatal(err)
			}
			cfg, err := repository.ReadConfig(filepath.Join(dir, tc.model))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.GetName() != tc.model || cfg.GetMaxBatchSize() != tc.maxBatchSize {
				t.Errorf("config name %q max_batch_size %d, want %q %d", cfg.GetName(), cfg.GetMaxBatchSize(), tc.model, tc.maxBatchSize)
			}
			if got := cfg.GetVersionPolicy().GetAll() != nil; got != (tc.policy == "all") {
				t.Errorf("version_policy %v, want %q", cfg.GetVersionPolicy(), tc.policy)
			}
			vs, err := repository.Versions(filepath.Join(dir, tc.model))
			if err != nil || !slices.Equal(vs, tc.versions) {
				t.Fatalf("versions %v (%v), want %v", vs, err, tc.versions)
			}
			for _, v := range tc.versions {
				b, err := os.ReadFile(filepath.Join(dir, tc.model, strconv.FormatInt(v, 10), "model.onnx"))
				if err != nil || string(b) != "onnx" {
					t.Errorf("version %d's model file: %q %v", v, b, err)
				}
			}
		})
	}
}

func TestMakeRepositoryRefuses(t *testing.T) {
	root := sampleRoot(t)
	// A sample whose model file was never generated.
	if err := os.MkdirAll(filepath.Join(root, "models", "ungenerated", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "models", "ungenerated", "config.pbtxt"), []byte("name: \"ungenerated\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m    RepoModel
		want string
	}{
		{RepoModel{Sample: "nope"}, `repository model "nope"`},
		{RepoModel{Sample: "ungenerated"}, "is empty (run make models)"},
		{RepoModel{Sample: "ungenerated", Name: "other"}, "is empty (run make models)"},
		{RepoModel{Sample: "ungenerated", MaxBatchSize: 4}, "has no max_batch_size line"},
	} {
		err := MakeRepository(root, t.TempDir(), tc.m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.m, err, tc.want)
		}
	}
}

func TestSetScrapeInterval(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "alerts", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{string(b), []string{"scrape_interval: 1s", "scrape_timeout: 1s", "evaluation_interval: 1s", "job_name: envoy", "cluster: local"}, ""},
		{"global: {}\n", []string{"scrape_interval: 1s", "scrape_timeout: 1s", "evaluation_interval: 1s"}, ""},
		{"scrape_configs: []\n", nil, "no global section"},
		{"- a\n", nil, "not a mapping"},
	} {
		out, err := setScrapeInterval([]byte(tc.in), time.Second)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%q gives\n%s\nwithout %q", tc.in, out, w)
			}
		}
	}
}
