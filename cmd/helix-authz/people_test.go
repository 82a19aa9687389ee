package main

import (
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/password"
)

// The people's flags: argon2id below OWASP's minimum is refused, the
// defaults are the minimum, and session timeouts must make sense.
func TestPeopleFlags(t *testing.T) {
	base := []string{"--database-url=postgres://helix@db/helix", "--issuer=https://auth.example.com",
		"--gateway-config=gateway.yaml", "--plaintext-loopback"}
	for _, tc := range []struct {
		name string
		args []string
		err  string
	}{
		{name: "defaults"},
		{name: "raised", args: []string{"--password-memory-kib=65536", "--password-iterations=3", "--password-parallelism=2"}},
		{name: "memory below the minimum", args: []string{"--password-memory-kib=19455"}, err: "memory"},
		{name: "one iteration", args: []string{"--password-iterations=1"}, err: "iterations"},
		{name: "no parallelism", args: []string{"--password-parallelism=0"}, err: "parallelism"},
		{name: "parallelism out of range", args: []string{"--password-parallelism=256"}, err: "out of range"},
		{name: "idle longer than lifetime", args: []string{"--session-idle-timeout=13h"}, err: "--session-idle-timeout"},
		{name: "zero reset lifetime", args: []string{"--password-reset-lifetime=0s"}, err: "--password-reset-lifetime"},
		{name: "negative token session", args: []string{"--token-session-lifetime=-1h"}, err: "--token-session-lifetime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(append(append([]string{}, base...), tc.args...))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parseFlags: %v, want an error naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "defaults" && (o.password != password.Minimum || o.sessionIdle != 30*time.Minute ||
				o.sessionLifetime != 12*time.Hour || o.tokenSessionLifetime != 30*24*time.Hour ||
				o.emailVerifyLifetime != 24*time.Hour || o.passwordResetLifetime != time.Hour) {
				t.Errorf("defaults %+v", o)
			}
		})
	}
}
