package stack

// Rolling upgrades of the running stack (tests/resilience's upgrade
// mode): Envoy's hot restart, and the specs a caller runs again with
// another binary.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/helixflow/helixflow/internal/supervise"
)

// Envoy's hot restart timing: the old epoch drains its listeners'
// connections for EnvoyDrainTime (HTTP/2 GOAWAY, gradually, so that the
// clients do not all reconnect at once), and is told to exit
// envoyParentShutdown after the new one started, once the connections
// notified last had the HCM's drain timeout (5 s) to finish their
// streams.
const (
	EnvoyDrainTime      = 5 * time.Second
	envoyParentShutdown = EnvoyDrainTime + 10*time.Second
)

// envoyEpochArgs are Envoy's hot restart flags for epoch n. The base id
// names the shared memory and sockets the epochs meet on: the admin port,
// which no other stack on the machine has. Epoch 0 replaces what an
// earlier run with the same base id left in /dev/shm; a later epoch
// started again after a crash (no parent left) runs alone rather than
// failing.
func (s *Stack) envoyEpochArgs(epoch int) []string {
	args := []string{"--base-id", strconv.Itoa(s.Ports.EnvoyAdmin), "--restart-epoch", strconv.Itoa(epoch),
		"--drain-time-s", strconv.Itoa(int(EnvoyDrainTime / time.Second)),
		"--parent-shutdown-time-s", strconv.Itoa(int(envoyParentShutdown / time.Second))}
	if epoch > 0 {
		args = append(args, "--skip-hot-restart-on-no-parent")
	}
	return args
}

// RestartEnvoy hot-restarts Envoy (Options.EnvoyHotRestart): a new
// process, the next restart epoch, takes the listening sockets from the
// running one and is ready once its config arrived from helix-xds; the
// old one stops accepting, drains its connections for EnvoyDrainTime and
// exits. No connection attempt is refused meanwhile. It returns when the
// old process is gone.
func (s *Stack) RestartEnvoy(ctx context.Context) error {
	if !s.opts.EnvoyHotRestart {
		return fmt.Errorf("stack: Envoy runs with --disable-hot-restart (Options.EnvoyHotRestart)")
	}
	spec, ok := s.specs[Envoy]
	if !ok {
		return fmt.Errorf("stack: no process %s", Envoy)
	}
	next := spec
	var epoch int
	var err error
	if next.Args, epoch, err = s.nextEnvoyArgs(spec.Args); err != nil {
		return err
	}
	next.Ready = func(ctx context.Context) error {
		// The admin port answers from the old process until the new one
		// takes it over: ask which epoch answers.
		body, err := s.EnvoyAdmin(ctx, "/stats?filter=^server%5C.hot_restart_epoch$")
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(body), "server.hot_restart_epoch:")); got != strconv.Itoa(epoch) {
			return fmt.Errorf("envoy epoch %s answers, waiting for %d", got, epoch)
		}
		// LIVE: its listeners and clusters arrived from helix-xds.
		if body, err = s.EnvoyAdmin(ctx, "/ready"); err == nil && strings.TrimSpace(body) != "LIVE" {
			err = fmt.Errorf("envoy is %s", strings.TrimSpace(body))
		}
		return err
	}
	if _, err := s.group.Replace(ctx, next, envoyParentShutdown+5*time.Second); err != nil {
		return err
	}
	s.specs[Envoy] = next
	return nil
}

// nextEnvoyArgs is Envoy's command line for the restart epoch after the
// one args run, and that epoch.
func (s *Stack) nextEnvoyArgs(args []string) ([]string, int, error) {
	i := slices.Index(args, "--restart-epoch")
	if i < 0 || i+1 >= len(args) {
		return nil, 0, fmt.Errorf("stack: Envoy's command line has no --restart-epoch")
	}
	epoch, err := strconv.Atoi(args[i+1])
	if err != nil {
		return nil, 0, fmt.Errorf("stack: Envoy's --restart-epoch: %w", err)
	}
	epoch++
	var next []string
	for k := 0; k < len(args); k++ {
		switch args[k] {
		case "--base-id", "--restart-epoch", "--drain-time-s", "--parent-shutdown-time-s":
			k++ // and its value
		case "--skip-hot-restart-on-no-parent":
		default:
			next = append(next, args[k])
		}
	}
	return append(next, s.envoyEpochArgs(epoch)...), epoch, nil
}

// Spec is the named process's spec as the stack starts it (a rolling
// upgrade runs it with another Path: StopProcess, then Run).
func (s *Stack) Spec(name string) (supervise.Spec, bool) {
	spec, ok := s.specs[name]
	return spec, ok
}

// removeEnvoySharedMemory removes what Envoy's hot restart leaves in
// /dev/shm once the last epoch exited (Close): its shared memory, named
// by the base id times ten.
func (s *Stack) removeEnvoySharedMemory() {
	if s.opts.EnvoyHotRestart {
		_ = os.Remove(fmt.Sprintf("/dev/shm/envoy_shared_memory_%d", s.Ports.EnvoyAdmin*10))
	}
}
