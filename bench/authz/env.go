package main

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
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/bench/internal/sysinfo"
)

func postgresVersion(ctx context.Context, dsn string) string {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "unknown"
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return "unknown"
	}
	return benchdoc.FirstLine(v)
}

// postgresCPU returns a function giving the CPU time so far of the
// postmaster in dataDir and its live children (the backends serving the
// connection pools, which live as long as their connections).
func postgresCPU(dataDir string) func() time.Duration {
	return func() time.Duration {
		b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
		if err != nil {
			return 0
		}
		pm, err := strconv.Atoi(benchdoc.FirstLine(string(b)))
		if err != nil {
			return 0
		}
		total, _ := sysinfo.ProcCPU(pm)
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			s := string(st)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
			if len(f) > 1 && f[1] == strconv.Itoa(pm) {
				c, _ := sysinfo.ProcCPU(pid)
				total += c
			}
		}
		return total
	}
}

// pprofOverlay is added to cmd/helix-authz by `go build -overlay` for
// --profile only; the product build never has it.
//
//go:embed pprof.go.overlay
var pprofOverlay []byte

// buildProfiled builds helix-authz with a pprof listener (on the address
// in HELIX_BENCH_PPROF) and returns the binary's path.
func buildProfiled(ctx context.Context, tmp string) (string, error) {
	root, err := os.Getwd()
	if err != nil {
		return "", err
	}
	src := filepath.Join(tmp, "pprof_bench.go")
	if err := os.WriteFile(src, pprofOverlay, 0o644); err != nil {
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
	logf("building %s (helix-authz with a pprof listener)", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-tags=vtprotobuf", "-overlay", ovPath, "-o", bin, "./cmd/helix-authz") // as make build builds it
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build profiled helix-authz: %w\n%s", err, out)
	}
	return bin, nil
}

// captureProfile writes a CPU profile of d (whole seconds, at least 1)
// taken from the pprof listener at addr.
func captureProfile(ctx context.Context, addr string, d time.Duration, path string) error {
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
