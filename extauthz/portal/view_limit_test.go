package portal

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/extauthz/session"
)

// TestFormTooLarge: a POSTed form over maxFormBytes is answered 413 with a
// message, before the session is looked up or the API called.
func TestFormTooLarge(t *testing.T) {
	p, err := New(Config{API: http.NotFoundHandler(), Sessions: &session.Manager{}, PublicOrigin: "https://portal.test"})
	if err != nil {
		t.Fatal(err)
	}
	called := false
	h := p.page(func(http.ResponseWriter, *http.Request, *View) { called = true }, false)
	body := "csrf=x&name=" + strings.Repeat("a", maxFormBytes)
	r := httptest.NewRequest(http.MethodPost, "https://portal.test/portal/signup", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://portal.test")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "larger than 64 KiB") {
		t.Fatalf("oversized form: %d %q", w.Code, w.Body.String())
	}
	if called {
		t.Error("the page handler ran for an oversized form")
	}
}
