package stack

import (
	"slices"
	"testing"

	"github.com/helixflow/helixflow/internal/pki"
)

// TestWorkersReportUsageToAuthz: a registering worker reports usage to
// helix-authz's gRPC listener (with its registration certificate, the
// --usage-* files' default); one that does not register has no worker
// certificate and counts nothing. The same holds for the per-message plan
// limits (--limits-address, the same listener and files).
func TestWorkersReportUsageToAuthz(t *testing.T) {
	s, err := New(Options{Root: ".", Dir: t.TempDir(), Workers: []Worker{{Name: "w1"}, {Name: "w2", NoRegister: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.issue(t.Context(), pki.LocalSpecs(), s.opts.Workers...); err != nil {
		t.Fatal(err)
	}
	want := []string{"--usage-address=" + Addr(s.Ports.ExtAuthz), "--usage-flush-interval=" + UsageFlushInterval.String(),
		"--limits-address=" + Addr(s.Ports.ExtAuthz)}
	for i, registers := range []bool{true, false} {
		spec, err := s.worker(i)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if slices.Contains(spec.Args, w) != registers {
				t.Errorf("%s (registers: %v): %v, %s present: %v", spec.Name, registers, spec.Args, w, !registers)
			}
		}
	}
}
