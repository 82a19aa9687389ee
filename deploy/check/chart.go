package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
)

// KubeVersion is the Kubernetes version the chart is rendered for (that of
// the client-go the objects are decoded with).
var KubeVersion = chartutil.KubeVersion{Version: "v1.37.0", Major: "1", Minor: "37"}

// ReleaseName and Namespace of the renders.
const (
	ReleaseName = "hf"
	Namespace   = "helixflow"
)

// ErrLint marks lint findings of warning severity or worse (helm lint --strict).
var ErrLint = errors.New("helm lint")

// Lint runs Helm's linter on the chart with values, as `helm lint --strict`
// would: warnings fail too.
func Lint(chartDir string, values map[string]any) error {
	kv := KubeVersion
	linter := lint.AllWithKubeVersion(chartDir, values, Namespace, &kv)
	var errs []error
	for _, m := range linter.Messages {
		if m.Severity >= support.WarningSev {
			errs = append(errs, fmt.Errorf("%w: %s", ErrLint, m.Error()))
		}
	}
	return errors.Join(errs...)
}

// Render renders the chart with values as `helm template` does (hooks
// included), checking values.schema.json on the way.
func Render(ctx context.Context, chartDir string, values map[string]any) (string, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return "", fmt.Errorf("load chart: %w", err)
	}
	cfg := &action.Configuration{Log: log.New(io.Discard, "", 0).Printf}
	inst := action.NewInstall(cfg)
	inst.DryRun = true
	inst.ClientOnly = true
	inst.Replace = true
	inst.ReleaseName = ReleaseName
	inst.Namespace = Namespace
	kv := KubeVersion
	inst.KubeVersion = &kv
	inst.APIVersions = chartutil.VersionSet{"cert-manager.io/v1", "monitoring.coreos.com/v1"}
	rel, err := inst.RunWithContext(ctx, chrt, values)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		fmt.Fprintf(&b, "\n---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	return b.String(), nil
}

// ReadValues reads a values file.
func ReadValues(path string) (map[string]any, error) {
	v, err := chartutil.ReadValuesFile(path)
	if err != nil {
		return nil, err
	}
	return v.AsMap(), nil
}
