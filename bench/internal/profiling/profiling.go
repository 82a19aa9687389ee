// Package profiling builds helix-authz with a pprof listener for the
// benchmarks' --profile flags (bench/authz, bench/gateway) and captures
// CPU profiles from it. The listener is added by `go build -overlay`:
// the product build never has one.
package profiling

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// AddrEnv names the environment variable holding the address the profiled
// helix-authz serves net/http/pprof on (plain HTTP; use loopback).
const AddrEnv = "HELIX_BENCH_PPROF"

// overlay is the file added to cmd/helix-authz.
//
//go:embed pprof.go.overlay
var overlay []byte

// BuildAuthz builds helix-authz with the pprof listener into
// root/.tools/helix-authz-pprof (as make build builds it: -tags=vtprotobuf)
// and returns its path. tmp holds the overlay's files.
func BuildAuthz(ctx context.Context, root, tmp string) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	src := filepath.Join(tmp, "pprof_bench.go")
	if err := os.WriteFile(src, overlay, 0o644); err != nil {
		return "", err
	}
	ov, err := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(root, "cmd", "helix-authz", "zz_pprof_bench.go"): src},
	})
	if err != nil {
		return "", err
	}
	ovPath := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(root, ".tools", "helix-authz-pprof")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags=vtprotobuf", "-overlay", ovPath, "-o", bin, "./cmd/helix-authz")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build profiled helix-authz: %w\n%s", err, out)
	}
	return bin, nil
}

// Capture writes a CPU profile of d (whole seconds, at least 1) taken from
// the pprof listener at addr to path.
func Capture(ctx context.Context, addr string, d time.Duration, path string) error {
	secs := max(1, int(d.Seconds()))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: HTTP %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
