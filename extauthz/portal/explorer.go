package portal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/internal/wire"
)

// maxPrefill bounds the zeros the explorer writes into a request: a
// larger input (an image) gets an empty data list to fill in, not a
// megabyte of zeros.
const maxPrefill = 4096

// explorerData is the explorer page's.
type explorerData struct {
	Models      []Model
	Unavailable string
	Model       *Model // the chosen one; nil when none is open to the caller
	// InferPath is POST's path for the chosen model, on this origin.
	InferPath        string
	Request          string // the prefilled KServe v2 request body
	Truncated        bool   // some input was too large to prefill
	Curl, Python, Go string
}

func (p *Portal) explorerRoutes() []route {
	return []route{{pattern: "GET " + wire.PortalPrefix + "explorer", signedIn: true, handler: p.explorerPage}}
}

func (p *Portal) explorerPage(w http.ResponseWriter, r *http.Request, v *View) {
	v.Title, v.Nav = "API explorer", "explorer"
	models, unavailable, err := p.listModels(r, v)
	if err != nil {
		p.apiFailure(w, r, v, err)
		return
	}
	d := explorerData{Models: models, Unavailable: unavailable}
	status := http.StatusOK
	want := r.URL.Query().Get("model")
	for i := range models {
		if models[i].Name == want || (want == "" && i == 0) {
			d.Model = &models[i]
			break
		}
	}
	if want != "" && d.Model == nil && unavailable == "" {
		status, v.Error = http.StatusNotFound, fmt.Sprintf("There is no model %q that you may use; pick one of the list.", want)
		if len(models) > 0 {
			d.Model = &models[0]
		}
	}
	if m := d.Model; m != nil {
		d.InferPath = "/v2/models/" + url.PathEscape(m.Name) + "/infer"
		var req inferRequest
		req, d.Truncated = prefill(m)
		body, err := requestText(req)
		if err != nil {
			p.apiFailure(w, r, v, fmt.Errorf("portal: explorer request: %w", err))
			return
		}
		d.Request = body
		origin := strings.TrimSuffix(p.cfg.PublicOrigin, "/")
		d.Curl = curlSnippet(origin, d.InferPath, d.Request)
		d.Python = pythonSnippet(origin, m)
		d.Go = goSnippet(origin, d.InferPath, d.Request)
	}
	v.Data = d
	p.render(w, status, "explorer", v)
}

// inferRequest is a KServe v2 inference request.
type inferRequest struct {
	Inputs []inferInput `json:"inputs"`
}

type inferInput struct {
	Name     string  `json:"name"`
	Shape    []int64 `json:"shape"`
	Datatype string  `json:"datatype"`
	Data     []any   `json:"data"`
}

// requestText writes req with one input a line: readable, where indenting
// every value would put each zero on a line of its own.
func requestText(req inferRequest) (string, error) {
	var b strings.Builder
	b.WriteString("{\n  \"inputs\": [")
	for i, in := range req.Inputs {
		line, err := json.Marshal(in)
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		b.Write(line)
	}
	if len(req.Inputs) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("]\n}")
	return b.String(), nil
}

// fullShape is t's shape as a request sends it: the batch dimension (1)
// first when the model batches, and 1 for each variable dimension.
func fullShape(m *Model, t Tensor) []int64 {
	shape := make([]int64, 0, len(t.Shape)+1)
	if m.MaxBatchSize > 0 {
		shape = append(shape, 1)
	}
	for _, d := range t.Shape {
		if d < 1 {
			d = 1
		}
		shape = append(shape, d)
	}
	return shape
}

// prefill returns a request for m with every input zero (false, ""),
// and whether some input was too large to fill.
func prefill(m *Model) (inferRequest, bool) {
	req := inferRequest{Inputs: make([]inferInput, 0, len(m.Inputs))}
	truncated := false
	for _, t := range m.Inputs {
		shape := fullShape(m, t)
		n := int64(1)
		for _, d := range shape {
			if n > maxPrefill || d > maxPrefill {
				n = maxPrefill + 1
				break
			}
			n *= d
		}
		data := []any{}
		if n <= maxPrefill {
			data = make([]any, n)
			for i := range data {
				data[i] = zeroOf(t.Datatype)
			}
		} else {
			truncated = true
		}
		req.Inputs = append(req.Inputs, inferInput{Name: t.Name, Shape: shape, Datatype: t.Datatype, Data: data})
	}
	return req, truncated
}

func zeroOf(datatype string) any {
	switch datatype {
	case "BOOL":
		return false
	case "BYTES":
		return ""
	default:
		return 0
	}
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func curlSnippet(origin, path, body string) string {
	return "curl -sS -X POST " + shellQuote(origin+path) + ` \
  -H "Authorization: Bearer $HELIX_API_KEY" \
  -H "Content-Type: application/json" \
  --data-binary @- <<'JSON'
` + body + "\nJSON\n"
}

// numpyTypes maps KServe v2 datatypes to numpy's.
var numpyTypes = map[string]string{
	"BOOL": "np.bool_", "UINT8": "np.uint8", "UINT16": "np.uint16", "UINT32": "np.uint32", "UINT64": "np.uint64",
	"INT8": "np.int8", "INT16": "np.int16", "INT32": "np.int32", "INT64": "np.int64",
	"FP16": "np.float16", "FP32": "np.float32", "FP64": "np.float64", "BYTES": "np.object_",
}

// pyString is s as a Python string literal (JSON's escapes are Python's).
func pyString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func pyShape(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func pythonSnippet(origin string, m *Model) string {
	u, err := url.Parse(origin)
	host, ssl := origin, "True"
	if err == nil {
		host = u.Host
		if u.Scheme == "http" {
			ssl = "False"
		}
	}
	var b strings.Builder
	b.WriteString("# pip install tritonclient[http] numpy\nimport os\n\nimport numpy as np\nimport tritonclient.http as httpclient\n\n")
	fmt.Fprintf(&b, "client = httpclient.InferenceServerClient(url=%s, ssl=%s)\n", pyString(host), ssl)
	b.WriteString("headers = {\"Authorization\": \"Bearer \" + os.environ[\"HELIX_API_KEY\"]}\n\ninputs = []\n")
	for _, t := range m.Inputs {
		shape := pyShape(fullShape(m, t))
		dt, ok := numpyTypes[t.Datatype]
		if !ok {
			dt = "np.float32"
		}
		fmt.Fprintf(&b, "tensor = httpclient.InferInput(%s, %s, %s)\n", pyString(t.Name), shape, pyString(t.Datatype))
		if t.Datatype == "BYTES" {
			fmt.Fprintf(&b, "tensor.set_data_from_numpy(np.full(%s, b\"\", dtype=np.object_))\n", shape)
		} else {
			fmt.Fprintf(&b, "tensor.set_data_from_numpy(np.zeros(%s, dtype=%s))\n", shape, dt)
		}
		b.WriteString("inputs.append(tensor)\n")
	}
	fmt.Fprintf(&b, "\nresult = client.infer(%s, inputs, headers=headers)\n", pyString(m.Name))
	for _, t := range m.Outputs {
		fmt.Fprintf(&b, "print(%s, result.as_numpy(%s))\n", pyString(t.Name), pyString(t.Name))
	}
	if len(m.Outputs) == 0 {
		b.WriteString("print(result.get_response())\n")
	}
	return b.String()
}

func goSnippet(origin, path, body string) string {
	lit := "`" + body + "`"
	if strings.Contains(body, "`") {
		lit = strconv.Quote(body)
	}
	return `package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
)

func main() {
	body := ` + lit + `
	req, err := http.NewRequest(http.MethodPost, ` + strconv.Quote(origin+path) + `, strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+os.Getenv("HELIX_API_KEY"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status)
	fmt.Println(string(out))
}
`
}
