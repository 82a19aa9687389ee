package main

import (
	"context"
	"fmt"
	"os"
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
