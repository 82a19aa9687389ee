package portal

import (
	"encoding/json"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestExplorerPage(t *testing.T) {
	e := newDataEnv(t, dataOptions{})
	uid, _ := e.user("dev@example.test", false, "Acme")
	text := Model{Name: "echo's", Inputs: []Tensor{{Name: "TEXT", Datatype: "BYTES", Shape: []int64{2}}}}
	e.catalog.set(false, simpleModel, text)
	b := e.browser(uid)

	p := b.get("/portal/explorer")
	p.expect(t, http.StatusOK, `<option value="simple" selected>`, `data-infer-path="/v2/models/simple/infer"`,
		`<script type="module" src="/portal/assets/explorer.js">`, `$HELIX_API_KEY`, e.srv.URL+"/v2/models/simple/infer",
		"tritonclient.http", `np.zeros([1, 16], dtype=np.float32)`, `client.infer(&#34;simple&#34;`, "package main")
	// The prefilled request is KServe v2 JSON: zeros of each input's shape,
	// the batch dimension (1) first, 1 for a variable dimension.
	m := regexp.MustCompile(`(?s)<textarea id="request"[^>]*>(.*?)</textarea>`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatal("no request textarea")
	}
	var req inferRequest
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &req); err != nil {
		t.Fatalf("the prefilled request is not JSON: %v\n%s", err, m[1])
	}
	if got := jsonOf(t, req.Inputs[0].Shape); got != "[1,16]" || len(req.Inputs[0].Data) != 16 || req.Inputs[0].Data[0] != 0.0 {
		t.Errorf("INPUT0: shape %s, %d values", got, len(req.Inputs[0].Data))
	}
	if got := jsonOf(t, req.Inputs[1]); got != `{"name":"FLAG","shape":[1,1],"datatype":"BOOL","data":[false]}` {
		t.Errorf("FLAG: %s", got)
	}
	// The API key is never a form field: nothing the portal could receive.
	if strings.Contains(p.body, `name="api-key"`) || strings.Contains(p.body, `name="key"`) {
		t.Error("the API key field has a name")
	}
	noInlineCode(t, p.body)

	q := b.get("/portal/explorer?model=echo%27s")
	q.expect(t, http.StatusOK, `data-infer-path="/v2/models/echo%27s/infer"`, `&#39;`+e.srv.URL+`/v2/models/echo%27s/infer&#39;`,
		`np.full([2], b&#34;&#34;, dtype=np.object_)`, `&#34;data&#34;:[&#34;&#34;,&#34;&#34;]`)

	b.get("/portal/explorer?model=%3Cb%3Enope").expect(t, http.StatusNotFound, "There is no model &#34;&lt;b&gt;nope&#34; that you may use")

	e.catalog.set(true)
	b.get("/portal/explorer").expect(t, http.StatusOK, "The model catalogue is unavailable right now")
}

// noInlineCode: the CSP allows no inline script or style, so a page must
// have none (they would be blocked).
func noInlineCode(t *testing.T, body string) {
	t.Helper()
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
		if !strings.Contains(m, ` src="`) {
			t.Errorf("inline script: %s", m)
		}
	}
	for _, bad := range []string{" style=", "<style", " onclick=", " onload=", " onsubmit=", "javascript:"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page has %q", bad)
		}
	}
}

func TestPrefill(t *testing.T) {
	for _, tc := range []struct {
		name      string
		m         Model
		want      string
		truncated bool
	}{
		{"no batching", Model{Inputs: []Tensor{{Name: "X", Datatype: "INT64", Shape: []int64{2, 2}}}},
			`{"inputs":[{"name":"X","shape":[2,2],"datatype":"INT64","data":[0,0,0,0]}]}`, false},
		{"batching, variable", Model{MaxBatchSize: 4, Inputs: []Tensor{{Name: "S", Datatype: "BYTES", Shape: []int64{-1}}}},
			`{"inputs":[{"name":"S","shape":[1,1],"datatype":"BYTES","data":[""]}]}`, false},
		{"an image", Model{MaxBatchSize: 1, Inputs: []Tensor{{Name: "I", Datatype: "FP32", Shape: []int64{3, 224, 224}}}},
			`{"inputs":[{"name":"I","shape":[1,3,224,224],"datatype":"FP32","data":[]}]}`, true},
		{"overflowing dims", Model{Inputs: []Tensor{{Name: "H", Datatype: "FP32", Shape: []int64{1 << 40, 1 << 40, 1 << 40}}}},
			`{"inputs":[{"name":"H","shape":[1099511627776,1099511627776,1099511627776],"datatype":"FP32","data":[]}]}`, true},
		{"no inputs", Model{}, `{"inputs":[]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, truncated := prefill(&tc.m)
			if got := jsonOf(t, req); got != tc.want || truncated != tc.truncated {
				t.Errorf("got %s (truncated %v), want %s (%v)", got, truncated, tc.want, tc.truncated)
			}
		})
	}
}

func FuzzPrefill(f *testing.F) {
	f.Add(int64(16), int64(-1), int64(3), int32(0))
	f.Add(int64(1<<62), int64(1<<62), int64(2), int32(8))
	f.Fuzz(func(t *testing.T, a, b, c int64, batch int32) {
		m := Model{MaxBatchSize: int32(batch), Inputs: []Tensor{{Name: "X", Datatype: "FP32", Shape: []int64{a, b, c}}}}
		req, _ := prefill(&m)
		if n := len(req.Inputs[0].Data); n > maxPrefill {
			t.Fatalf("%d values prefilled, over %d", n, maxPrefill)
		}
	})
}

func TestSnippets(t *testing.T) {
	if got := shellQuote("it's"); got != `'it'\''s'` {
		t.Errorf("shellQuote: %s", got)
	}
	g := goSnippet("https://gw.example", "/v2/models/m/infer", "{\"a\":\"`\"}")
	if !strings.Contains(g, `body := "{\"a\":\"`+"`"+`\"}"`) {
		t.Errorf("a body with a backquote is not a quoted string:\n%s", g)
	}
	py := pythonSnippet("http://127.0.0.1:8080", &Model{Name: "m", Inputs: []Tensor{{Name: "X", Datatype: "UINT8", Shape: []int64{2}}}})
	for _, want := range []string{`url="127.0.0.1:8080", ssl=False`, `np.zeros([2], dtype=np.uint8)`, `print(result.get_response())`} {
		if !strings.Contains(py, want) {
			t.Errorf("python snippet lacks %q:\n%s", want, py)
		}
	}
}

func TestRequestText(t *testing.T) {
	for _, tc := range []struct {
		req  inferRequest
		want string
	}{
		{inferRequest{}, "{\n  \"inputs\": []\n}"},
		{inferRequest{Inputs: []inferInput{{Name: "A", Shape: []int64{1}, Datatype: "INT8", Data: []any{0}}, {Name: "B", Shape: []int64{}, Datatype: "BOOL", Data: []any{}}}},
			"{\n  \"inputs\": [\n    {\"name\":\"A\",\"shape\":[1],\"datatype\":\"INT8\",\"data\":[0]},\n    {\"name\":\"B\",\"shape\":[],\"datatype\":\"BOOL\",\"data\":[]}\n  ]\n}"},
	} {
		got, err := requestText(tc.req)
		if err != nil || got != tc.want {
			t.Errorf("got %q, %v; want %q", got, err, tc.want)
		}
		var back inferRequest
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Errorf("not JSON: %v", err)
		}
	}
}
