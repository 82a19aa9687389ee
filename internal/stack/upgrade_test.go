package stack

import (
	"slices"
	"strconv"
	"testing"
)

// Each hot restart's command line is the last one's with the next epoch,
// the same base id and every other flag kept.
func TestNextEnvoyArgs(t *testing.T) {
	s := &Stack{opts: Options{EnvoyHotRestart: true}}
	s.Ports.EnvoyAdmin = 19000
	args := append([]string{"-c", "envoy.yaml"}, s.envoyEpochArgs(0)...)
	args = append(args, "--concurrency", "2")
	want0 := []string{"-c", "envoy.yaml", "--base-id", "19000", "--restart-epoch", "0", "--drain-time-s", "5", "--parent-shutdown-time-s", "15", "--concurrency", "2"}
	if !slices.Equal(args, want0) {
		t.Fatalf("epoch 0: %q, want %q", args, want0)
	}
	for want := 1; want <= 2; want++ {
		next, epoch, err := s.nextEnvoyArgs(args)
		if err != nil {
			t.Fatal(err)
		}
		w := []string{"-c", "envoy.yaml", "--concurrency", "2", "--base-id", "19000", "--restart-epoch", strconv.Itoa(want),
			"--drain-time-s", "5", "--parent-shutdown-time-s", "15", "--skip-hot-restart-on-no-parent"}
		if epoch != want || !slices.Equal(next, w) {
			t.Fatalf("epoch %d: %q, want %d: %q", epoch, next, want, w)
		}
		args = next
	}
	if _, _, err := s.nextEnvoyArgs([]string{"-c", "envoy.yaml", "--disable-hot-restart"}); err == nil {
		t.Fatal("no error for a command line without --restart-epoch")
	}
}
