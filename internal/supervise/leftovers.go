package supervise

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RemoveLeftovers stops the processes a PID file (Options.PIDFile) lists
// whose command line still contains marker (a checkout's path: the same
// PID may belong to an unrelated process by now), newest first: what a
// supervisor killed with SIGKILL left behind. Each gets SIGTERM, then
// SIGKILL 5 s later. The file is removed.
func RemoveLeftovers(pidFile, marker string, log *slog.Logger) error {
	b, err := os.ReadFile(pidFile)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	var lines []string
	for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	for _, line := range slices.Backward(lines) {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid <= 1 {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
			continue
		}
		log.Warn("stopping a process left by an earlier run", "process", f[1], "pid", pid)
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := os.Remove(pidFile); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("supervise: %w", err)
	}
	return nil
}
