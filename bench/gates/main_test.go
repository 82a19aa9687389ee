package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/internal/testdeps"
)

func TestRun(t *testing.T) {
	root, err := benchdoc.RepoRoot(configFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, toolsDir, "buf")); err != nil {
		testdeps.Missing(t, "%s/buf not found: bash scripts/deps.sh gates builds it", toolsDir)
	}
	var out strings.Builder
	// The committed API against the committed release copies.
	if err := run(context.Background(), []string{"api"}, &out); err != nil {
		t.Fatalf("api: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "gates: API against v0.29.0:") {
		t.Errorf("api printed %q", out.String())
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"api-baseline"}, "needs -tag"},
		{[]string{"bench", "-nosuchflag"}, "nosuchflag"},
	} {
		if err := run(context.Background(), tt.args, &out); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want %q", tt.args, err, tt.want)
		}
	}
}
