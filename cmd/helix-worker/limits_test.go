package main

import (
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/limits"
)

// TestLimitsFlags: --limits-address uses the --usage-* files (defaulting to
// the --xds-* ones) like --usage-address, since both reach helix-authz's
// gRPC listener as a worker.
func TestLimitsFlags(t *testing.T) {
	xds := []string{"--xds-address=127.0.0.1:1", "--xds-ca-file=ca", "--xds-cert-file=c", "--xds-key-file=k", "--advertise-address=127.0.0.1"}
	for _, tc := range []struct {
		args []string
		want string // "" = accepted
	}{
		{args: nil},
		{args: append([]string{"--limits-address=127.0.0.1:9"}, xds...)},
		{args: []string{"--limits-address=127.0.0.1:9", "--usage-ca-file=a", "--usage-cert-file=b", "--usage-key-file=c", "--limits-timeout=1s"}},
		{args: []string{"--limits-address=127.0.0.1:9"}, want: "--limits-address needs --usage-ca-file"},
		{args: []string{"--limits-address=helix-authz"}, want: `--limits-address "helix-authz"`},
		{args: []string{"--limits-timeout=0s"}, want: "--limits-timeout 0s must be positive"},
	} {
		o, err := parseFlags(append([]string{"--model-repository", "models"}, tc.args...))
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
			continue
		}
		if err == nil && len(tc.args) > 0 && (o.usageCAFile == "" || o.usageCertFile == "" || o.usageKeyFile == "") {
			t.Errorf("%q: TLS files not filled: %q %q %q", tc.args, o.usageCAFile, o.usageCertFile, o.usageKeyFile)
		}
	}
	o, err := parseFlags([]string{"--model-repository", "models"})
	if err != nil || o.limitsTimeout != limits.DefaultTimeout || o.limitsAddress != "" {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}
