package infer

import (
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/wire"
)

// TestCheckGatewayModel: the worker refuses a request whose model is not
// the one helix-authz authorized, and one with the header repeated.
func TestCheckGatewayModel(t *testing.T) {
	tests := []struct {
		name       string
		authorized []string
		model      string
		want       string // "" = allowed
	}{
		{"no gateway in front", nil, "any", ""},
		{"the authorized model", []string{"simple"}, "simple", ""},
		{"another model", []string{"simple"}, "secret", "request is for model 'secret' but the gateway authorized model 'simple'"},
		{"header repeated", []string{"simple", "simple"}, "simple", "request carries 2 " + wire.HeaderModel + " headers"},
		{"empty authorized model", []string{""}, "simple", "gateway authorized model ''"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckGatewayModel(tt.authorized, tt.model)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || CodeOf(err) != CodeInvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want invalid argument containing %q", err, tt.want)
			}
		})
	}
}
