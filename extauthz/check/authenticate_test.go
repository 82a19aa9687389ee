package check

import (
	"context"
	"errors"
	"testing"
)

func TestAuthenticate(t *testing.T) {
	e := newEnv(t)
	limits := &fakeLimits{}
	e.svc.rateLimits = limits
	e.apik.add("hx_good", Principal{ClientID: "client-k", Plan: "free", Scopes: []string{ScopeRead}, Models: []string{"m1"}})
	good := e.mint(t, claims([]string{ScopeInfer}, []string{"*"}))
	revoked := claims([]string{ScopeInfer}, []string{"*"})
	revoked.JTI = "jti-revoked"
	e.revs.revoked["jti-revoked"] = true
	disabled := claims([]string{ScopeInfer}, []string{"*"})
	disabled.ClientID, disabled.Subject = "client-off", "client-off"
	e.clis.disabled["client-off"] = true

	tests := []struct {
		name          string
		authorization string
		apiKey        string
		wantClient    string
		wantErr       error
	}{
		{"client token", "Bearer " + good, "", "client-a", nil},
		{"bearer scheme is case-insensitive", "bearer " + good, "", "client-a", nil},
		{"API key as bearer", "Bearer hx_good", "", "client-k", nil},
		{"API key header", "", "hx_good", "client-k", nil},
		{"nothing", "", "", "", ErrUnauthenticated},
		{"both", "Bearer " + good, "hx_good", "", ErrUnauthenticated},
		{"basic scheme", "Basic Y2xpZW50OnNlY3JldA==", "", "", ErrUnauthenticated},
		{"bad token", "Bearer eyJhbGciOiJub25lIn0.e30.", "", "", ErrUnauthenticated},
		{"SQL metacharacters", "Bearer x' OR '1'='1", "", "", ErrUnauthenticated},
		{"unknown key", "", "hx_nope", "", ErrUnauthenticated},
		{"key without prefix", "", "nope", "", ErrUnauthenticated},
		{"revoked token", "Bearer " + e.mint(t, revoked), "", "", ErrUnauthenticated},
		{"disabled client", "Bearer " + e.mint(t, disabled), "", "", ErrUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := e.svc.Authenticate(context.Background(), tt.authorization, tt.apiKey)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || p != nil {
					t.Fatalf("Authenticate = %+v, %v; want %v", p, err, tt.wantErr)
				}
				return
			}
			if err != nil || p.ClientID != tt.wantClient {
				t.Fatalf("Authenticate = %+v, %v; want client %s", p, err, tt.wantClient)
			}
		})
	}
	if len(limits.calls) != 0 {
		t.Errorf("Authenticate spent rate-limit quota: %v", limits.calls)
	}

	t.Run("backend down is unavailable, not unauthenticated", func(t *testing.T) {
		e.apik.err = errBackendDown
		defer func() { e.apik.err = nil }()
		if _, err := e.svc.Authenticate(context.Background(), "", "hx_good"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		e.revs.err = errBackendDown
		defer func() { e.revs.err = nil }()
		if _, err := e.svc.Authenticate(context.Background(), "Bearer "+good, ""); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	})
}
