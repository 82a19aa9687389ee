package main

import (
	"strings"
	"testing"
)

// TestDatabaseURLPasswordFromEnvironment: a password never rides on the
// command line; the URL that holds one comes from HELIX_DATABASE_URL.
func TestDatabaseURLPasswordFromEnvironment(t *testing.T) {
	base := []string{"--issuer=https://auth.example.com", "--gateway-config=gateway.yaml", "--plaintext-loopback"}
	for _, tc := range []struct {
		name, flag, env, want, err string
	}{
		{name: "flag without password", flag: "postgres://helix@db/helix", want: "postgres://helix@db/helix"},
		{name: "environment with password", env: "postgres://helix:s3cret@db/helix", want: "postgres://helix:s3cret@db/helix"},
		{name: "flag wins over environment", flag: "postgres://helix@db/a", env: "postgres://helix:s3cret@db/b", want: "postgres://helix@db/a"},
		{name: "flag with password in URL", flag: "postgres://helix:s3cret@db/helix", err: "HELIX_DATABASE_URL"},
		{name: "flag with password key", flag: "host=db user=helix password=s3cret", err: "HELIX_DATABASE_URL"},
		{name: "neither", err: "is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HELIX_DATABASE_URL", tc.env)
			args := base
			if tc.flag != "" {
				args = append(append([]string{}, base...), "--database-url="+tc.flag)
			}
			o, err := parseFlags(args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error naming %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("the error repeats the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.databaseURL != tc.want {
				t.Fatalf("database URL %q, want %q", o.databaseURL, tc.want)
			}
		})
	}
}
