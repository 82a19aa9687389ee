package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
)

// versions are the software measured, for the report.
type versions struct {
	envoy, perfAnalyzer, redis, postgres, commit string
}

func readVersions(ctx context.Context, o *options, envoyBin, dsn string) versions {
	v := versions{envoy: "unknown", perfAnalyzer: "unknown", redis: "unknown", postgres: "unknown"}
	run := func(bin string, args ...string) string {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(cctx, bin, args...).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	// "envoy  version: <hash>/1.40.0/Clean/RELEASE/BoringSSL"
	if _, after, ok := strings.Cut(run(envoyBin, "--version"), "version: "); ok {
		if parts := strings.Split(strings.TrimSpace(after), "/"); len(parts) > 1 {
			v.envoy = parts[1] + " (" + strings.Join(parts[2:], "/") + ")"
		}
	}
	// The binary reports "0.0.0 (commit ...)"; deps.sh records the wheel's
	// version next to it.
	built := strings.TrimPrefix(run(o.perfAnalyzer, "--version"), "Perf Analyzer Version ")
	if b, err := os.ReadFile(filepath.Join(".deps", "perf_analyzer", "VERSION")); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			v.perfAnalyzer = f[0] + " (binary: " + benchdoc.FirstLine(built) + ")"
		}
	}
	// "Redis server v=7.0.15 sha=..."
	for _, f := range strings.Fields(run("redis-server", "--version")) {
		if s, ok := strings.CutPrefix(f, "v="); ok {
			v.redis = s
		}
	}
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		var s string
		if conn.QueryRow(ctx, "SHOW server_version").Scan(&s) == nil {
			v.postgres = benchdoc.FirstLine(s)
		}
		_ = conn.Close(context.Background())
	}
	v.commit = benchdoc.GitCommit("cmd", "xds", "extauthz", "workers", "envoy", "internal", "go.mod", "go.sum")
	return v
}
