package admin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/secret"
)

// TestPortalUser: an in-process call marked with WithPortalUser acts as
// that person only while they are a platform admin, audited as them
// through the portal; anyone else is refused and the refusal audited.
func TestPortalUser(t *testing.T) {
	e, _ := newPeopleEnv(t)
	call := func(ctx context.Context) int {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/admin/v1/users", nil)
		rec := httptest.NewRecorder()
		e.handler.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, tc := range []struct {
		name string
		user string
		want int
	}{
		{"platform admin", e.admin, http.StatusOK},
		{"not a platform admin", e.plain, http.StatusForbidden},
		{"no such user", "00000000-0000-0000-0000-000000000000", http.StatusForbidden},
		{"not a user id", "root@example.com", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := call(admin.WithPortalUser(context.Background(), tc.user)); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
			last := e.trail.Last()
			if last.Actor != "user:"+tc.user || last.Operator != admin.PortalOperator {
				t.Errorf("audited as %q operator %q, want user:%s via %s", last.Actor, last.Operator, tc.user, admin.PortalOperator)
			}
			wantResult := audit.ResultSuccess
			if tc.want != http.StatusOK {
				wantResult = audit.ResultDenied
			}
			if last.Result != wantResult {
				t.Errorf("audit result %q, want %q", last.Result, wantResult)
			}
		})
	}
	// Withdrawn: the next call is refused (read at each call).
	if err := e.st.SetPlatformAdmin(context.Background(), e.admin, false); err != nil {
		t.Fatal(err)
	}
	if got := call(admin.WithPortalUser(context.Background(), e.admin)); got != http.StatusForbidden {
		t.Fatalf("after the flag was withdrawn: status %d, want 403", got)
	}
	// The same request without the mark is anonymous.
	if got := call(context.Background()); got != http.StatusUnauthorized {
		t.Fatalf("unmarked: status %d, want 401", got)
	}
}

// TestPortalUserWithoutPeople: without people there is no one to act as.
func TestPortalUserWithoutPeople(t *testing.T) {
	h, err := admin.Handler(admin.Config{Store: newFakeStore(), Hasher: secret.NewHasher(nil), Token: testToken,
		Plans: admin.NewPlans(testPlans, "free")})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(admin.WithPortalUser(context.Background(), "00000000-0000-0000-0000-000000000001"),
		http.MethodGet, "/admin/v1/clients", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotImplemented {
		t.Fatalf("status %d, want 501", rec.Code)
	}
}
