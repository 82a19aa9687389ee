package main

import (
	"strings"
	"testing"
	"time"
)

func TestHashScheme(t *testing.T) {
	tests := []struct{ in, want string }{
		{"$pbkdf2-sha256$i=25000,l=32$c2FsdA$aGFzaA", "$pbkdf2-sha256$i=25000,l=32"},
		{"$2a$10$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "$2a$10"},
		{"plain", "unknown"},
		{"", "unknown"},
	}
	for _, tt := range tests {
		if got := hashScheme(tt.in); got != tt.want {
			t.Errorf("hashScheme(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSampleQuantileAndRate(t *testing.T) {
	s := &sample{ok: 100, elapsed: 2 * time.Second}
	for i := 100; i >= 1; i-- {
		s.lat = append(s.lat, time.Duration(i)*time.Microsecond)
	}
	if got := s.rate(); got != 50 {
		t.Errorf("rate = %v, want 50", got)
	}
	if got := s.quantile(0.5); got != 51*time.Microsecond {
		t.Errorf("p50 = %v, want 51us", got)
	}
	if got := s.quantile(0.99); got != 100*time.Microsecond {
		t.Errorf("p99 = %v, want 100us", got)
	}
	s.rates = []float64{90, 110}
	if got := s.spread(); got != 0.2 {
		t.Errorf("spread = %v, want 0.2", got)
	}
}

func TestJWTHeader(t *testing.T) {
	h, err := jwtHeader("eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.e30.sig")
	if err != nil || h["alg"] != "ES256" || h["typ"] != "at+jwt" {
		t.Fatalf("jwtHeader = %v, %v", h, err)
	}
	for _, bad := range []string{"opaque-token", "a.b", "!!.e30.sig", "bm90IGpzb24.e30.sig"} {
		if _, err := jwtHeader(bad); err == nil {
			t.Errorf("jwtHeader(%q) accepted", bad)
		}
	}
	if !strings.Contains(headerDesc(h), "ES256") {
		t.Errorf("headerDesc = %q", headerDesc(h))
	}
}

func TestPeopleReportExplainsAMissedLoginGoal(t *testing.T) {
	login := &sample{ok: 100, elapsed: 5 * time.Second, serverCPU: 4 * time.Second}
	for i := range 100 {
		login.lat = append(login.lat, time.Duration(300+i)*time.Millisecond)
	}
	grant := func(ok int64) *sample {
		return &sample{ok: ok, elapsed: time.Second, lat: []time.Duration{time.Millisecond}}
	}
	out := &outcome{
		started: time.Now(), finished: time.Now(),
		logins: []*point{{what: "login", callers: loginCallers, servers: []string{"helix-authz"},
			results: map[string]*sample{"helix-authz": login}}},
		grants: []*point{{what: "grant", callers: 16, servers: []string{grantRefresh, grantClient},
			results: map[string]*sample{grantRefresh: grant(600), grantClient: grant(1000)}}},
	}
	out.machine.Cores = 2
	got := peopleReport(&options{rounds: 1, duration: time.Second}, out)
	for _, want := range []string{
		peopleBegin, peopleEnd,
		"MISSED: login p99 <= 100ms at 8 callers",
		"met: refresh-token grants >= 0.5x the client-credentials rate at 16 callers: 0.60x",
		// 40 ms of CPU per login, 8 callers, 2 cores: a mean of at least 160 ms.
		"8 x 40.0 ms / 2 = 160 ms", "4 cores or more", "5 at most on 2 cores",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
}
