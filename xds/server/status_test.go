package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// TestStatusTraffic: /status carries the traffic policies the provider
// gives, as JSON with the field names helixctl reads, and an empty list
// without a provider.
func TestStatusTraffic(t *testing.T) {
	policies := []TrafficPolicy{
		{Model: "simple", Source: TrafficSourceConfig, Active: true, Sticky: true,
			Variants: []TrafficVariant{{Name: "stable", Version: "1", Weight: 90}, {Name: "canary", Version: "2", Pool: "canary", Weight: 10}},
			Shadow:   &TrafficShadow{Name: "mirror", Pool: "shadow", Percent: 50}},
		{Model: "mlp", Source: TrafficSourceRollout, InactiveReason: "no_endpoints", Detail: `variant "canary" (version 3, any pool) matches no ready endpoint`,
			Variants: []TrafficVariant{{Name: "stable", Version: "2", Weight: 99}, {Name: "canary", Version: "3", Weight: 1}}},
	}
	tests := []struct {
		name     string
		provider func() []TrafficPolicy
		want     []TrafficPolicy
		wantJSON []string
	}{
		{"no provider", nil, []TrafficPolicy{}, []string{`"traffic": []`}},
		{"provider without policies", func() []TrafficPolicy { return nil }, []TrafficPolicy{}, []string{`"traffic": []`}},
		{"policies", func() []TrafficPolicy { return policies }, policies, []string{
			`"model": "simple"`, `"source": "config"`, `"active": true`, `"percent": 50`,
			`"source": "rollout"`, `"inactive_reason": "no_endpoints"`, `"detail": "variant \"canary\" (version 3, any pool) matches no ready endpoint"`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, Options{})
			h.srv.SetTrafficStatus(tc.provider)
			rec := httptest.NewRecorder()
			h.srv.StatusHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("GET /status = %d", rec.Code)
			}
			for _, w := range tc.wantJSON {
				if !strings.Contains(rec.Body.String(), w) {
					t.Errorf("/status lacks %s:\n%s", w, rec.Body)
				}
			}
			var got Status
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Traffic, tc.want) {
				t.Errorf("traffic = %+v, want %+v", got.Traffic, tc.want)
			}
		})
	}
}
