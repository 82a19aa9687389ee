package webapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type request struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, body, contentType string
		status                  int // 0: decoded
		code, description       string
	}{
		{name: "object", body: `{"name":"a","count":2}`},
		{name: "white space around", body: " \n{\"name\":\"a\"}\t\n"},
		{name: "no content type", body: `{}`, contentType: "-"},
		{name: "json with charset", body: `{}`, contentType: "application/json; charset=utf-8"},
		{name: "empty", body: "", status: 400, code: CodeInvalidRequest, description: "empty"},
		{name: "only spaces", body: "  \n", status: 400, code: CodeInvalidRequest, description: "empty"},
		{name: "null", body: "null", status: 400, code: CodeInvalidRequest, description: "must be a JSON object"},
		{name: "array", body: `[{"name":"a"}]`, status: 400, code: CodeInvalidRequest, description: "must be a JSON object"},
		{name: "string", body: `"a"`, status: 400, code: CodeInvalidRequest, description: "must be a JSON object"},
		{name: "unknown field", body: `{"nme":"a"}`, status: 400, code: CodeInvalidRequest, description: `unknown field "nme"`},
		{name: "wrong type", body: `{"count":"2"}`, status: 400, code: CodeInvalidRequest, description: "count"},
		{name: "trailing value", body: `{}{}`, status: 400, code: CodeInvalidRequest, description: "after the first JSON value"},
		{name: "trailing brace", body: `{}}`, status: 400, code: CodeInvalidRequest, description: "after the first JSON value"},
		{name: "truncated", body: `{"name":`, status: 400, code: CodeInvalidRequest, description: "malformed JSON"},
		{name: "form", body: "name=a", contentType: "application/x-www-form-urlencoded", status: 415, code: CodeUnsupportedType},
		{name: "bad content type", body: `{}`, contentType: "application/json;;", status: 415, code: CodeUnsupportedType},
		{name: "too large", body: `{"name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, status: 413, code: CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/x", strings.NewReader(tt.body))
			switch tt.contentType {
			case "":
				r.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				r.Header.Set("Content-Type", tt.contentType)
			}
			w := httptest.NewRecorder()
			var v request
			ok := Decode(w, r, &v)
			if tt.status == 0 {
				if !ok {
					t.Fatalf("refused: %d %s", w.Code, w.Body)
				}
				if w.Body.Len() != 0 {
					t.Fatalf("answered although it decoded: %s", w.Body)
				}
				return
			}
			if ok {
				t.Fatalf("decoded %+v; want %d", v, tt.status)
			}
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.status, w.Body)
			}
			var e ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("error body %q: %v", w.Body, err)
			}
			if e.Error != tt.code || !strings.Contains(e.Description, tt.description) {
				t.Fatalf("error %+v, want code %q naming %q", e, tt.code, tt.description)
			}
		})
	}
}

func TestWriteJSONNeverCached(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, http.StatusNotFound, CodeNotFound, "no such organization")
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Fatalf("Cache-Control %q", got)
	}
	if got := w.Header().Get("Content-Type"); got != "application/json" {
		t.Fatalf("Content-Type %q", got)
	}
}

// FuzzDecode: whatever the body, Decode either decodes an object or
// answers a JSON error body, and never panics.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"name":"a"}`, "null", "[]", `{}{}`, `{"count":1e999}`, "\xff", `{"name":"\u0000"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		w := httptest.NewRecorder()
		var v request
		if Decode(w, r, &v) {
			if w.Body.Len() != 0 {
				t.Fatalf("decoded and answered: %s", w.Body)
			}
			return
		}
		var e ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" || e.Description == "" {
			t.Fatalf("refusal without an error body: %q (%v)", w.Body, err)
		}
	})
}

func TestHandleAnswers405(t *testing.T) {
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	Handle(mux, Route{"POST /api/v1/thing", ok}, Route{"GET /api/v1/thing", ok}, Route{"DELETE /api/v1/thing/{id}", ok})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for _, tt := range []struct {
		method, path string
		want         int
		allow        string
	}{
		{http.MethodPost, "/api/v1/thing", 204, ""},
		{http.MethodGet, "/api/v1/thing", 204, ""},
		{http.MethodHead, "/api/v1/thing", 204, ""},
		{http.MethodPut, "/api/v1/thing", 405, "POST, GET, HEAD"},
		{http.MethodGet, "/api/v1/thing/7", 405, "DELETE"},
		{http.MethodGet, "/api/v1/other", 418, ""},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
		if w.Code != tt.want {
			t.Fatalf("%s %s: %d, want %d", tt.method, tt.path, w.Code, tt.want)
		}
		if tt.want == 405 {
			var e ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error != CodeMethodNotAllowed || w.Header().Get("Allow") != tt.allow {
				t.Fatalf("%s %s: %q Allow %q", tt.method, tt.path, w.Body, w.Header().Get("Allow"))
			}
		}
	}
}
