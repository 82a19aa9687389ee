package check

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// Object is one rendered manifest, decoded into its Go type.
type Object struct {
	Source string // the template that rendered it ("helixflow/templates/xds.yaml")
	GVK    schema.GroupVersionKind
	Name   string
	Obj    runtime.Object
}

func (o Object) String() string { return fmt.Sprintf("%s %s (%s)", o.GVK.Kind, o.Name, o.Source) }

// ErrDecode marks a manifest that does not decode strictly.
var ErrDecode = errors.New("manifest does not decode")

// Decoder decodes manifests strictly: unknown fields, duplicate fields and
// kinds nobody registered are errors.
type Decoder struct {
	codecs serializer.CodecFactory
}

// NewDecoder knows client-go's built-in kinds, cert-manager's and the
// prometheus-operator's.
func NewDecoder() (*Decoder, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, certmanagerv1.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return &Decoder{codecs: serializer.NewCodecFactory(s, serializer.EnableStrict)}, nil
}

// Decode decodes every document of a rendered chart. Helm's "# Source:"
// comments name each document's template.
func (d *Decoder) Decode(manifest string) ([]Object, error) {
	var out []Object
	var errs []error
	for i, doc := range splitDocuments(manifest) {
		src := sourceOf(doc)
		if len(bytes.TrimSpace(stripComments([]byte(doc)))) == 0 {
			continue
		}
		obj, gvk, err := d.codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: document %d (%s): %w", ErrDecode, i+1, src, err))
			continue
		}
		name := ""
		if m, ok := obj.(interface{ GetName() string }); ok {
			name = m.GetName()
		}
		out = append(out, Object{Source: src, GVK: *gvk, Name: name, Obj: obj})
	}
	return out, errors.Join(errs...)
}

// splitDocuments splits a YAML stream at "---" lines.
func splitDocuments(s string) []string {
	var docs []string
	var cur strings.Builder
	for line := range strings.Lines(s) {
		if strings.TrimRight(line, " \t\r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}

func sourceOf(doc string) string {
	for line := range strings.Lines(doc) {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "# Source: "); ok {
			return s
		}
	}
	return "?"
}

func stripComments(b []byte) []byte {
	var out bytes.Buffer
	for line := range bytes.Lines(b) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out.Write(line)
		}
	}
	return out.Bytes()
}

// checkNames checks names and labels as the API server would: names are
// DNS-1123 subdomains (Services: DNS-1035 labels), label keys are
// qualified names and label values valid.
func checkNames(objs []Object) []error {
	var errs []error
	for _, o := range objs {
		m, ok := o.Obj.(interface {
			GetName() string
			GetLabels() map[string]string
		})
		if !ok {
			continue
		}
		check := validation.IsDNS1123Subdomain
		if o.GVK.Kind == "Service" {
			check = validation.IsDNS1035Label
		}
		for _, msg := range check(m.GetName()) {
			errs = append(errs, fmt.Errorf("%s: metadata.name: %s", o, msg))
		}
		keys := make([]string, 0, len(m.GetLabels()))
		for k := range m.GetLabels() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, msg := range validation.IsQualifiedName(k) {
				errs = append(errs, fmt.Errorf("%s: label key %q: %s", o, k, msg))
			}
			for _, msg := range validation.IsValidLabelValue(m.GetLabels()[k]) {
				errs = append(errs, fmt.Errorf("%s: label %s=%q: %s", o, k, m.GetLabels()[k], msg))
			}
		}
	}
	return errs
}

// toYAML is for error messages.
func toYAML(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
