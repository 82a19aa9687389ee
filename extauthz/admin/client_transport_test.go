package admin_test

import (
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/admin"
)

// TestClientSendsTheTokenOnlyOverTLSOffLoopback: plain http is for a local
// admin API; anywhere else the token would cross the network in clear.
func TestClientSendsTheTokenOnlyOverTLSOffLoopback(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8091", true},
		{"http://localhost:8091", true},
		{"http://[::1]:8091", true},
		{"https://10.0.0.1:8091", true},
		{"https://admin.example.com", true},
		{"http://10.0.0.1:8091", false},
		{"http://helix-authz:8091", false},
		{"http://localhost.example.com", false},
		{"http://0.0.0.0:8091", false},
	} {
		_, err := admin.NewClient(tt.url, testToken, nil)
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s: %v", tt.url, err)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), "https")):
			t.Errorf("%s: %v, want a refusal asking for https", tt.url, err)
		}
	}
}
