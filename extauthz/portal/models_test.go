package portal

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

var simpleModel = Model{
	Name: "simple", Versions: []string{"1", "2"}, Ready: true, Workers: 2, ReadyWorkers: 1, Platform: "onnxruntime_onnx",
	MaxBatchSize: 8,
	Inputs:       []Tensor{{Name: "INPUT0", Datatype: "FP32", Shape: []int64{16}}, {Name: "FLAG", Datatype: "BOOL", Shape: []int64{-1}}},
	Outputs:      []Tensor{{Name: "OUTPUT0", Datatype: "FP32", Shape: []int64{16}}},
	Config:       json.RawMessage(`{"name":"simple","max_batch_size":8,"backend":"onnxruntime"}`),
}

func TestModelPages(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	uid, _ := e.user("dev@example.test", false, "Acme")
	hostile := Model{Name: `<script>alert(1)</script>`, Ready: false, Workers: 1}
	e.catalog.set(false, simpleModel, hostile)
	b := e.browser(uid)

	list := b.get("/portal/models")
	list.expect(t, http.StatusOK, `<a href="/portal/models/simple">simple</a>`, "1 of 2 workers", "onnxruntime_onnx", "Not ready",
		`href="/portal/explorer?model=simple"`, "&lt;script&gt;alert(1)&lt;/script&gt;")
	list.lacks(t, "<script>alert(1)")
	if csp := list.header.Get("Content-Security-Policy"); csp != ContentSecurityPolicy {
		t.Errorf("CSP %q", csp)
	}

	one := b.get("/portal/models/simple")
	one.expect(t, http.StatusOK, "<h1>simple</h1>", "<code>INPUT0</code>", "<code>[16]</code>", "<code>[-1]</code>", "OUTPUT0",
		"1, 2", "8 (the first dimension", `&#34;backend&#34;: &#34;onnxruntime&#34;`)

	// A name with '?' and '#' (allowed in model names) is one path segment.
	e.catalog.set(false, simpleModel, Model{Name: "q?a#b", Ready: true})
	b.get("/portal/models").expect(t, http.StatusOK, `<a href="/portal/models/q%3Fa%23b">q?a#b</a>`, `href="/portal/explorer?model=q%3fa%23b"`)
	b.get("/portal/models/q%3Fa%23b").expect(t, http.StatusOK, "<h1>q?a#b</h1>")
	b.get("/portal/explorer?model=q%3Fa%23b").expect(t, http.StatusOK, `data-infer-path="/v2/models/q%3Fa%23b/infer"`)

	b.get("/portal/models/nosuch").expect(t, http.StatusNotFound, "There is no model nosuch that you may use.")
	b.get("/portal/models/.hidden").expect(t, http.StatusNotFound, "There is no model by that name.")

	e.catalog.set(true)
	b.get("/portal/models").expect(t, http.StatusOK, "The model catalogue is unavailable right now: the model catalogue cannot be read right now")
	b.get("/portal/models/simple").expect(t, http.StatusServiceUnavailable, "unavailable right now")

	e.catalog.set(false)
	b.get("/portal/models").expect(t, http.StatusOK, "No model is open to you yet")

	// The catalogue shows each person what their organizations allow.
	e.catalog.set(false, simpleModel, Model{Name: "private"})
	narrow, _ := e.user("narrow@example.test", false, "Narrow", "models:simple:infer")
	nb := e.browser(narrow)
	nb.get("/portal/models").expect(t, http.StatusOK, `<a href="/portal/models/simple">simple</a>`)
	nb.get("/portal/models").lacks(t, "private")
	nb.get("/portal/models/private").expect(t, http.StatusNotFound, "There is no model private that you may use.")
	nb.get("/portal/explorer?model=private").expect(t, http.StatusNotFound)
	none, _ := e.user("none@example.test", false, "")
	e.browser(none).get("/portal/models").expect(t, http.StatusOK, "No model is open to you yet")

	anon := e.browser("").get("/portal/models")
	if anon.status != http.StatusSeeOther || !strings.HasPrefix(anon.header.Get("Location"), "/portal/signin?next=") {
		t.Fatalf("anonymous: %d %s", anon.status, anon.header.Get("Location"))
	}
}

func TestIndentJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"null", ""},
		{`{"b":1,"a":[1,2]}`, "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2\n  ]\n}"},
		{`{broken`, `{broken`},
	} {
		if got := indentJSON(json.RawMessage(tc.in)); got != tc.want {
			t.Errorf("indentJSON(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
