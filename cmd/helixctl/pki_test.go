package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPKIInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	initJSON := func(extra ...string) map[string]string {
		t.Helper()
		var out bytes.Buffer
		if err := run(context.Background(), append([]string{"pki", "init", "--dir", dir, "--output", "json", "--worker", "w1"}, extra...), &out); err != nil {
			t.Fatalf("pki init %v: %v", extra, err)
		}
		var rows []struct{ Name, Action, Usage string }
		if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
			t.Fatalf("%v in %s", err, out.String())
		}
		actions := map[string]string{}
		for _, r := range rows {
			actions[r.Name] = r.Action
		}
		return actions
	}
	want := []string{"ca", "envoy-server", "xds-server", "authz-server", "worker-server",
		"envoy-xds-client", "envoy-worker-client", "envoy-authz-client", "authz-xds-client", "worker-w1-client"}
	for _, step := range []struct {
		flags  []string
		action string
	}{{nil, "created"}, {nil, "kept"}, {[]string{"--force"}, "renewed"}} {
		got := initJSON(step.flags...)
		if len(got) != len(want) {
			t.Errorf("%v: %d certificates, want %d: %v", step.flags, len(got), len(want), got)
		}
		for _, name := range want {
			if got[name] != step.action {
				t.Errorf("%v: %s %q, want %s", step.flags, name, got[name], step.action)
			}
			if _, err := os.Stat(filepath.Join(dir, name+".key")); err != nil {
				t.Error(err)
			}
		}
	}

	var out bytes.Buffer
	if err := run(context.Background(), []string{"pki", "init", "--dir", dir, "--worker", "w1"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "NAME") || strings.Count(out.String(), " kept ") != len(want) {
		t.Errorf("table output:\n%s", out.String())
	}
}

func TestPKIUsage(t *testing.T) {
	for _, args := range [][]string{
		{"pki", "make"},
		{"pki", "init", "extra"},
		{"pki", "init", "--output", "yaml", "--dir", t.TempDir()},
		{"pki", "init", "--worker", "Not_A_Label", "--dir", t.TempDir()},
	} {
		if err := run(context.Background(), args, &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
}
