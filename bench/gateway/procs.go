package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/helixflow/helixflow/bench/internal/benchdoc"
	"github.com/helixflow/helixflow/bench/internal/sysinfo"
	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/supervise"
)

// errExited: a process of the stack ended while the benchmark needed it.
var errExited = errors.New("process exited")

// proc is a server process of the stack.
type proc = supervise.Proc

// tailLines is how much of a process's log an error shows.
const tailLines = 40

// cpu is a process's user+system CPU time so far (all its threads).
func cpu(p *proc) time.Duration {
	d, _ := sysinfo.ProcCPU(p.PID())
	return d
}

// waitFor polls cond every 100 ms until it holds, p exits, ctx ends or d
// passes; the error says what was last seen.
func waitFor(ctx context.Context, what string, d time.Duration, p *proc, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		last = cond(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		var done <-chan struct{}
		if p != nil {
			done = p.Done()
		}
		select {
		case <-done:
			return fmt.Errorf("%s: %s %w (%v):\n%s", what, p.Name(), errExited, p.Err(), p.Tail(tailLines))
		case <-ctx.Done():
			if p != nil {
				return fmt.Errorf("%s: not within %v (%w); last: %v\n%s log:\n%s", what, d, ctx.Err(), last, p.Name(), p.Tail(tailLines))
			}
			return fmt.Errorf("%s: not within %v (%w); last: %v", what, d, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// httpGet GETs url and wants a 200; it returns the body.
func httpGet(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}

// ports hands out distinct free loopback ports (internal/freeport: below
// the ephemeral range, so no outgoing connection takes one before its
// server binds it).
type ports struct{ used map[int]bool }

func (p *ports) pick() (int, error) {
	if p.used == nil {
		p.used = map[int]bool{}
	}
	for range 100 {
		n, err := freeport.Pick()
		if err != nil {
			return 0, err
		}
		if !p.used[n] {
			p.used[n] = true
			return n, nil
		}
	}
	return 0, errors.New("no distinct free port after 100 picks")
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// repoRoot finds the repository root from the working directory up.
func repoRoot() (string, error) {
	return benchdoc.RepoRoot(filepath.Join("bench", "gateway", "main.go"))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
