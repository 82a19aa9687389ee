package portal

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/helixflow/helixflow/internal/sourcelimit"
)

type fixedDemo struct{ minted int }

func (d *fixedDemo) DemoToken(*http.Request) (string, int, error) {
	d.minted++
	return "demo-token", 300, nil
}

// TestDemoTokenLimit: past its burst a source gets 429 with Retry-After,
// and no token is minted for it; another source still gets one.
func TestDemoTokenLimit(t *testing.T) {
	limit, err := sourcelimit.New(sourcelimit.Config{Rate: 0.001, Burst: 2})
	if err != nil {
		t.Fatal(err)
	}
	demo := &fixedDemo{}
	p := &Portal{cfg: Config{Demo: demo, DemoModel: "simple", DemoLimit: limit}}
	call := func(addr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/portal/demo/token", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		p.demoToken(w, r, &View{})
		return w
	}
	for i := range 2 {
		if w := call("192.0.2.1:1000"); w.Code != http.StatusOK {
			t.Fatalf("call %d: %d %s", i, w.Code, w.Body)
		}
	}
	w := call("192.0.2.1:1001")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("over the burst: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if demo.minted != 2 {
		t.Errorf("minted %d tokens, want 2", demo.minted)
	}
	if w := call("192.0.2.2:1000"); w.Code != http.StatusOK {
		t.Errorf("another source: %d", w.Code)
	}
}
