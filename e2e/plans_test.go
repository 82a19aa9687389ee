package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// checkPlans tries the plans as a new user would, with helixctl against
// the running stack: a plan the gateway config lacks is refused, naming
// the ones it has; a client created without --plan or --model gets the
// default plan and reaches no model.
func (s *stack) checkPlans(t *testing.T, https *http.Client) {
	cmd := exec.Command(bin("helixctl"), "clients", "create", "--name", "e2e-gold", "--scope", "models:infer", "--plan", "gold")
	cmd.Env = append(os.Environ(), s.adminEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil ||
		!strings.Contains(stderr.String(), `plan: "gold" is not a plan of the gateway (plans: free, standard)`) {
		t.Errorf("helixctl clients create --plan gold: %v %s; want it refused, naming the plans", err, stderr.String())
	}

	out := runCmd(t, s.adminEnv, bin("helixctl"), "clients", "create", "--name", "e2e-new", "--scope", "models:infer", "--output", "json")
	var c struct {
		ID     string   `json:"client_id"`
		Secret string   `json:"client_secret"`
		Plan   string   `json:"plan"`
		Models []string `json:"models"`
	}
	if err := json.Unmarshal(out, &c); err != nil || c.Plan != "free" || len(c.Models) != 0 {
		t.Fatalf("a new client: %+v (%v), want the default plan free and no model", c, err)
	}
	code, body, err := s.restInfer(context.Background(), https, sampleModel, s.token(t, c.ID, c.Secret), nil)
	if err != nil || code != http.StatusForbidden {
		t.Errorf("infer by a client granted no model = %d %s (%v), want 403", code, body, err)
	}
}
