package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/wire"
)

// TestGatewayModelMustMatch: a path naming another model than the one the
// gateway authorized (x-helix-model) is refused on every per-model route,
// as the gRPC front end refuses such a message.
func TestGatewayModelMustMatch(t *testing.T) {
	paths := []struct{ method, path, body string }{
		{"GET", "/v2/models/simple", ""},
		{"GET", "/v2/models/simple/versions/1/ready", ""},
		{"GET", "/v2/models/simple/config", ""},
		{"GET", "/v2/models/simple/stats", ""},
		{"POST", "/v2/models/simple/infer", `{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,1],"data":[1]}]}`},
	}
	tests := []struct {
		name   string
		header []string
		status int
	}{
		{"no gateway", nil, 200},
		{"same model", []string{"simple"}, 200},
		{"other model", []string{"unbatched"}, 400},
		{"two headers", []string{"simple", "simple"}, 400},
	}
	h := NewHandler(newFakeService(), quiet)
	for _, p := range paths {
		for _, tt := range tests {
			t.Run(p.path+"/"+tt.name, func(t *testing.T) {
				req := httptest.NewRequest(p.method, p.path, strings.NewReader(p.body))
				for _, v := range tt.header {
					req.Header.Add(wire.HeaderModel, v)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != tt.status {
					t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, tt.status)
				}
				if tt.status != 200 && !strings.Contains(rec.Body.String(), "gateway") {
					t.Errorf("error %s does not name the gateway", rec.Body)
				}
			})
		}
	}
}
