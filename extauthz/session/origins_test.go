package session_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/session"
)

// With --public-url on the gateway, helix-authz's own origin (the
// issuer's, where helixctl login's /login page is) stays same-origin;
// any other is still refused.
func TestSameOriginOtherOrigins(t *testing.T) {
	m, err := session.New(session.Config{DB: deadPool(t), PublicOrigin: "https://gateway.test",
		OtherOrigins: []string{"https://auth.test:8090/", "https://gateway.test"}})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"": true, "https://gateway.test": true, "https://AUTH.test:8090": true,
		"https://auth.test": false, "https://evil.test": false, "null": false,
	} {
		r := httptest.NewRequest("POST", "/api/v1/login", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if got := m.SameOrigin(r); got != want {
			t.Errorf("Origin %q: SameOrigin = %v, want %v", origin, got, want)
		}
	}
	if _, err := session.New(session.Config{DB: deadPool(t), PublicOrigin: "https://gateway.test", OtherOrigins: []string{"auth.test"}}); err == nil ||
		!strings.Contains(err.Error(), "auth.test") {
		t.Fatalf("a bad other origin: %v", err)
	}
}
