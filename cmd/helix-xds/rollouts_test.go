package main

import (
	"strings"
	"testing"
)

// TestRolloutFlags: the database URL's password comes only from the
// environment; a Prometheus needs rollouts to evaluate.
func TestRolloutFlags(t *testing.T) {
	base := []string{"--config=g.yaml", "--plaintext-loopback"}
	for _, tc := range []struct {
		name, env       string
		args            []string
		wantErr         string
		wantDB, wantURL string
	}{
		{name: "neither: rollouts off", args: nil},
		{name: "flag without password", args: []string{"--database-url=postgres://helix@db/helix"}, wantDB: "postgres://helix@db/helix"},
		{name: "password from the environment", env: "postgres://helix:s3cret@db/helix", wantDB: "postgres://helix:s3cret@db/helix"},
		{name: "flag with password in URL", args: []string{"--database-url=postgres://helix:s3cret@db/helix"}, wantErr: "HELIX_DATABASE_URL"},
		{name: "flag with password key", args: []string{"--database-url=host=db user=helix password=s3cret"}, wantErr: "HELIX_DATABASE_URL"},
		{name: "prometheus with a database", env: "postgres://helix@db/helix", args: []string{"--prometheus-url=http://prometheus:9090"},
			wantDB: "postgres://helix@db/helix", wantURL: "http://prometheus:9090"},
		{name: "prometheus without a database", args: []string{"--prometheus-url=http://prometheus:9090"}, wantErr: "--prometheus-url is for rollouts"},
		{name: "prometheus not a URL", env: "postgres://helix@db/helix", args: []string{"--prometheus-url=prometheus:9090"}, wantErr: `--prometheus-url "prometheus:9090": want http(s)://`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HELIX_DATABASE_URL", tc.env)
			o, err := parseFlags(append(append([]string{}, base...), tc.args...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseFlags = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.databaseURL != tc.wantDB || o.prometheusURL != tc.wantURL {
				t.Fatalf("database %q prometheus %q, want %q %q", o.databaseURL, o.prometheusURL, tc.wantDB, tc.wantURL)
			}
		})
	}
}
