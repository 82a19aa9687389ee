package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// ErrBuild is returned when a dashboard cannot be built.
var ErrBuild = errors.New("dashboard build failed")

// builders are the dashboards, by file name.
var builders = map[string]func() *dashboard.DashboardBuilder{
	"gateway.json":       gatewayDashboard,
	"inference.json":     inferenceDashboard,
	"gpu.json":           gpuDashboard,
	"auth.json":          authDashboard,
	"control-plane.json": controlPlaneDashboard,
}

// render builds every dashboard into its JSON, by file name.
func render() (map[string][]byte, error) {
	out := make(map[string][]byte, len(builders))
	for name, b := range builders {
		d, err := b().Build()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBuild, name, err)
		}
		numberPanels(&d)
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBuild, name, err)
		}
		out[name] = buf.Bytes()
	}
	return out, nil
}

// numberPanels gives every panel and row a stable id, in order, so that
// links to a panel survive regeneration.
func numberPanels(d *dashboard.Dashboard) {
	var id uint32
	for _, p := range d.Panels {
		id++
		switch {
		case p.Panel != nil:
			p.Panel.Id = cog.ToPtr(id)
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		}
	}
}

// writeAll writes every dashboard into dir.
func writeAll(dir string) error {
	files, err := render()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), files[n], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// --- shared pieces ---

// dsVar is the dashboards' Prometheus data source, chosen by the viewer;
// provisioning/datasources names one "Prometheus" with uid "prometheus".
const dsVar = "datasource"

func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${" + dsVar + "}")}
}

// newDashboard is a dashboard with HelixFlow's defaults and the data
// source variable.
func newDashboard(uid, title, description string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{"helixflow"}).
		Editable().
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder(dsVar).
			Label("Data source").
			Type("prometheus"))
}

// queryVar is a multi-value variable over a label's values.
func queryVar(name, label, query string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Query(dashboard.StringOrMap{String: cog.ToPtr(query)}).
		Datasource(datasource()).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*")
}

// q is one PromQL query with its legend.
type q struct{ expr, legend string }

func targets(qs []q) []cog.Builder[variants.Dataquery] { return targetsOf(qs, false) }

// targetsOf are the panel's queries; with exemplars, Grafana shows the
// histograms' exemplars (a trace_id each) as dots linking to the trace.
func targetsOf(qs []q, exemplars bool) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(qs))
	for i, x := range qs {
		b := prometheus.NewDataqueryBuilder().
			Expr(x.expr).
			RefId(string(rune('A' + i))).
			Datasource(datasource())
		if exemplars {
			b = b.Exemplar(true)
		}
		if x.legend != "" {
			b = b.LegendFormat(x.legend)
		}
		out = append(out, b)
	}
	return out
}

// graph is a time series panel.
func graph(title, description, unit string, w uint32, qs ...q) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Unit(unit).
		Span(w).
		Height(8).
		Datasource(datasource()).
		Targets(targets(qs)).
		FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true))
}

// latency is a time series panel over histograms that carry trace ids
// as exemplars (helix-authz's and helix-worker's, served as OpenMetrics):
// a dot on the graph links to the trace in Jaeger (the Prometheus data
// source's exemplarTraceIdDestinations, provisioning/datasources).
func latency(title, description, unit string, w uint32, qs ...q) *timeseries.PanelBuilder {
	return graph(title, description+" Dots: exemplars, each a sampled request's trace.", unit, w).
		Targets(targetsOf(qs, true))
}

// single is a stat panel showing one number (the last), red from the
// threshold on; a threshold of 0 colours nothing.
func single(title, description, unit string, red float64, x q) *stat.PanelBuilder {
	steps := []dashboard.Threshold{{Color: "green"}}
	if red == 0 {
		steps[0].Color = "text"
	} else {
		steps = append(steps, dashboard.Threshold{Value: cog.ToPtr(red), Color: "red"})
	}
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Unit(unit).
		Span(6).
		Height(4).
		Datasource(datasource()).
		Targets(targets([]q{x})).
		ColorMode(common.BigValueColorModeValue).
		GraphMode(common.BigValueGraphModeArea).
		Orientation(common.VizOrientationAuto).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		Thresholds(dashboard.NewThresholdsConfigBuilder().
			Mode(dashboard.ThresholdsModeAbsolute).
			Steps(steps))
}

func row(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title) }
