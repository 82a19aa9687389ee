package portal

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/extauthz/catalog"
	"github.com/helixflow/helixflow/internal/wire"
)

// Model is a model of the catalogue as GET /api/v1/models answers it: the
// API's own type (extauthz/catalog), which the portal decodes the
// in-process answer into.
type Model = catalog.Model

// Tensor is one of a model's inputs or outputs (extauthz/catalog's).
type Tensor = catalog.Tensor

// modelsData is the models page's.
type modelsData struct {
	Models []Model
	// Unavailable: the catalogue could not be read (503); Models is empty.
	Unavailable string
}

// modelData is the model page's.
type modelData struct {
	Model    Model
	Sections []tensorSection // inputs, outputs
	Config   string          // the model's config, indented
}

type tensorSection struct {
	Caption string
	Rows    []tensorRow
}

type tensorRow struct{ Name, Datatype, Shape string }

func tensorRows(ts []Tensor) []tensorRow {
	rows := make([]tensorRow, 0, len(ts))
	for _, t := range ts {
		rows = append(rows, tensorRow{Name: t.Name, Datatype: t.Datatype, Shape: shapeText(t.Shape)})
	}
	return rows
}

// shapeText writes a shape as [3, 224, 224], a variable dimension as -1.
func shapeText(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatInt(d, 10))
	}
	b.WriteByte(']')
	return b.String()
}

func (p *Portal) modelRoutes() []route {
	return []route{
		{pattern: "GET " + wire.PortalPrefix + "models", signedIn: true, handler: p.modelsPage},
		{pattern: "GET " + wire.PortalPrefix + "models/{model}", signedIn: true, handler: p.modelPage},
	}
}

// listModels reads the catalogue the caller may see. A catalogue that is
// off or unreachable (503) is unavailable, not an error of the page.
func (p *Portal) listModels(r *http.Request, v *View) (models []Model, unavailable string, err error) {
	var out struct {
		Models []Model `json:"models"`
	}
	err = p.api(nil, r, v, http.MethodGet, "/api/v1/models", nil, &out)
	if e, ok := asAPIError(err); ok && e.Status == http.StatusServiceUnavailable {
		return nil, "The model catalogue is unavailable right now: " + e.Description, nil
	}
	return out.Models, "", err
}

func (p *Portal) modelsPage(w http.ResponseWriter, r *http.Request, v *View) {
	v.Title, v.Nav = "Models", "models"
	models, unavailable, err := p.listModels(r, v)
	if err != nil {
		p.apiFailure(w, r, v, err)
		return
	}
	v.Data = modelsData{Models: models, Unavailable: unavailable}
	p.render(w, http.StatusOK, "models", v)
}

func (p *Portal) modelPage(w http.ResponseWriter, r *http.Request, v *View) {
	v.Nav = "models"
	name := r.PathValue("model")
	if err := wire.CheckModelName(name); err != nil {
		p.fail(w, r, v, http.StatusNotFound, "There is no model by that name.")
		return
	}
	var m Model
	err := p.api(nil, r, v, http.MethodGet, "/api/v1/models/"+url.PathEscape(name), nil, &m)
	if e, ok := asAPIError(err); ok && e.Status == http.StatusServiceUnavailable {
		p.fail(w, r, v, http.StatusServiceUnavailable, "The model catalogue is unavailable right now: "+e.Description)
		return
	}
	if e, ok := asAPIError(err); ok && e.Status == http.StatusNotFound {
		p.fail(w, r, v, http.StatusNotFound, "There is no model "+name+" that you may use.")
		return
	}
	if err != nil {
		p.apiFailure(w, r, v, err)
		return
	}
	v.Title = m.Name
	v.Data = modelData{Model: m, Config: indentJSON(m.Config), Sections: []tensorSection{
		{Caption: "Inputs", Rows: tensorRows(m.Inputs)}, {Caption: "Outputs", Rows: tensorRows(m.Outputs)},
	}}
	p.render(w, http.StatusOK, "model", v)
}

// indentJSON returns raw indented for reading (keys in their order); ""
// for none.
func indentJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}
