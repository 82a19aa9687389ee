package check

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// ErrTerraform marks a problem found in a Terraform module.
var ErrTerraform = errors.New("terraform")

// TFModule is what the checks need of one Terraform module (one folder of
// .tf files), read with hcl/v2 alone: no provider schema is involved.
type TFModule struct {
	Dir       string
	Variables map[string]TFVariable
	Outputs   map[string]hcl.Range
	Locals    map[string]hcl.Range
	Resources map[string]hcl.Range // "type.name"
	Data      map[string]hcl.Range // "type.name"
	Calls     map[string]TFCall
	Providers map[string]bool // local names in required_providers

	refs []tfRef
}

// TFVariable is a variable block.
type TFVariable struct {
	Required bool // no default
	Range    hcl.Range
}

// TFCall is a module block.
type TFCall struct {
	Source string
	Args   map[string]hcl.Range
	Range  hcl.Range
}

type tfRef struct {
	trav  hcl.Traversal
	scope map[string]bool // names a dynamic block or for expression binds here
}

// Meta-arguments of module blocks.
var moduleMeta = map[string]bool{"source": true, "version": true, "count": true, "for_each": true, "providers": true, "depends_on": true}

// Root names that are not declarations of the module.
var builtinRoots = map[string]bool{"each": true, "count": true, "self": true, "path": true, "terraform": true}

// LoadTFModule parses every .tf file in dir.
func LoadTFModule(dir string) (*TFModule, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: %s: no .tf files", ErrTerraform, dir)
	}
	m := &TFModule{
		Dir: dir, Variables: map[string]TFVariable{}, Outputs: map[string]hcl.Range{}, Locals: map[string]hcl.Range{},
		Resources: map[string]hcl.Range{}, Data: map[string]hcl.Range{}, Calls: map[string]TFCall{}, Providers: map[string]bool{},
	}
	p := hclparse.NewParser()
	var diags hcl.Diagnostics
	for _, f := range files {
		file, d := p.ParseHCLFile(f)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		m.read(file.Body.(*hclsyntax.Body))
	}
	if diags.HasErrors() {
		return nil, fmt.Errorf("%w: %s", ErrTerraform, diags.Error())
	}
	return m, nil
}

func (m *TFModule) read(body *hclsyntax.Body) {
	for _, b := range body.Blocks {
		switch b.Type {
		case "variable":
			_, hasDefault := b.Body.Attributes["default"]
			m.Variables[b.Labels[0]] = TFVariable{Required: !hasDefault, Range: b.DefRange()}
			// type is a type expression (string, object({...})), not references.
			typ := b.Body.Attributes["type"]
			delete(b.Body.Attributes, "type")
			m.collect(b.Body, nil)
			if typ != nil {
				b.Body.Attributes["type"] = typ
			}
		case "output":
			m.Outputs[b.Labels[0]] = b.DefRange()
			m.collect(b.Body, nil)
		case "locals":
			for name, a := range b.Body.Attributes {
				m.Locals[name] = a.SrcRange
			}
			m.collect(b.Body, nil)
		case "resource":
			m.Resources[b.Labels[0]+"."+b.Labels[1]] = b.DefRange()
			m.collect(b.Body, nil)
		case "data":
			m.Data[b.Labels[0]+"."+b.Labels[1]] = b.DefRange()
			m.collect(b.Body, nil)
		case "module":
			call := TFCall{Args: map[string]hcl.Range{}, Range: b.DefRange()}
			for name, a := range b.Body.Attributes {
				if name == "source" {
					v, _ := a.Expr.Value(nil)
					if v.Type().FriendlyName() == "string" {
						call.Source = v.AsString()
					}
				}
				if !moduleMeta[name] {
					call.Args[name] = a.SrcRange
				}
			}
			m.Calls[b.Labels[0]] = call
			m.collect(b.Body, nil)
		case "terraform":
			for _, tb := range b.Body.Blocks {
				if tb.Type == "required_providers" {
					for name := range tb.Body.Attributes {
						m.Providers[name] = true
					}
				}
			}
		case "provider":
			m.collect(b.Body, nil)
		}
	}
}

// collect records every reference in a body. lifecycle's ignore_changes
// names attributes, not objects; a dynamic block binds its iterator.
func (m *TFModule) collect(body *hclsyntax.Body, scope map[string]bool) {
	for name, a := range body.Attributes {
		if name == "ignore_changes" {
			continue
		}
		for _, t := range a.Expr.Variables() {
			m.refs = append(m.refs, tfRef{trav: t, scope: scope})
		}
	}
	for _, b := range body.Blocks {
		inner := scope
		if b.Type == "dynamic" {
			inner = map[string]bool{b.Labels[0]: true}
			for k := range scope {
				inner[k] = true
			}
			if it, ok := b.Body.Attributes["iterator"]; ok {
				if tr, d := hcl.AbsTraversalForExpr(it.Expr); !d.HasErrors() {
					inner[tr.RootName()] = true
				}
			}
			for name, a := range b.Body.Attributes {
				if name != "iterator" {
					for _, t := range a.Expr.Variables() {
						m.refs = append(m.refs, tfRef{trav: t, scope: scope})
					}
				}
			}
			for _, cb := range b.Body.Blocks {
				m.collect(cb.Body, inner)
			}
			continue
		}
		m.collect(b.Body, inner)
	}
}

// IsLocalSource reports whether a module source is a folder of this repository.
func IsLocalSource(s string) bool { return strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") }

// Check checks the module on its own and against the local modules it
// calls: every reference names a declaration, every declared variable and
// local is used, every module call passes each required input and no
// unknown one, every module output referenced exists, and every
// resource's provider is required (each module declares its own; tflint
// refuses providers a module requires but does not use).
func (m *TFModule) Check() []error {
	var errs []error
	add := func(r hcl.Range, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrTerraform, r.String(), fmt.Sprintf(format, a...)))
	}
	callees := map[string]*TFModule{}
	for name, c := range m.Calls {
		if !IsLocalSource(c.Source) {
			continue
		}
		callee, err := LoadTFModule(filepath.Join(m.Dir, c.Source))
		if err != nil {
			add(c.Range, "module %s: %v", name, err)
			continue
		}
		callees[name] = callee
		for v, decl := range callee.Variables {
			if _, ok := c.Args[v]; decl.Required && !ok {
				add(c.Range, "module %s: required input %s (%s) is not passed", name, v, decl.Range.String())
			}
		}
		for arg, r := range c.Args {
			if _, ok := callee.Variables[arg]; !ok {
				add(r, "module %s: %s is not a variable of %s", name, arg, c.Source)
			}
		}
	}
	usedVars, usedLocals := map[string]bool{}, map[string]bool{}
	for _, ref := range m.refs {
		t := ref.trav
		root := t.RootName()
		r := t.SourceRange()
		attrs := traversalNames(t)
		switch {
		case ref.scope[root] || builtinRoots[root]:
		case root == "var":
			if len(attrs) < 1 {
				add(r, "var without a name")
			} else if _, ok := m.Variables[attrs[0]]; !ok {
				add(r, "var.%s is not declared", attrs[0])
			} else {
				usedVars[attrs[0]] = true
			}
		case root == "local":
			if len(attrs) < 1 {
				add(r, "local without a name")
			} else if _, ok := m.Locals[attrs[0]]; !ok {
				add(r, "local.%s is not declared", attrs[0])
			} else {
				usedLocals[attrs[0]] = true
			}
		case root == "module":
			if len(attrs) < 1 {
				add(r, "module without a name")
				continue
			}
			if _, ok := m.Calls[attrs[0]]; !ok {
				add(r, "module.%s is not declared", attrs[0])
				continue
			}
			if callee, ok := callees[attrs[0]]; ok && len(attrs) > 1 {
				if _, ok := callee.Outputs[attrs[1]]; !ok {
					add(r, "module.%s.%s: %s has no output %s", attrs[0], attrs[1], m.Calls[attrs[0]].Source, attrs[1])
				}
			}
		case root == "data":
			if len(attrs) < 2 {
				add(r, "data reference without type and name")
			} else if _, ok := m.Data[attrs[0]+"."+attrs[1]]; !ok {
				add(r, "data.%s.%s is not declared", attrs[0], attrs[1])
			}
		default:
			if len(attrs) < 1 {
				add(r, "%s: not a reference this module can resolve", root)
			} else if _, ok := m.Resources[root+"."+attrs[0]]; !ok {
				add(r, "%s.%s is not a resource of this module", root, attrs[0])
			}
		}
	}
	for _, name := range sortedKeys(m.Variables) {
		if !usedVars[name] {
			add(m.Variables[name].Range, "variable %s is declared but not used", name)
		}
	}
	for _, name := range sortedKeys(m.Locals) {
		if !usedLocals[name] {
			add(m.Locals[name], "local %s is declared but not used", name)
		}
	}
	for _, kind := range []map[string]hcl.Range{m.Resources, m.Data} {
		for _, name := range sortedKeys(kind) {
			provider, _, _ := strings.Cut(name, "_")
			if !m.Providers[provider] {
				add(kind[name], "%s: provider %s is not in required_providers", name, provider)
			}
		}
	}
	return errs
}

// traversalNames is the attribute names after the root, index steps left out.
func traversalNames(t hcl.Traversal) []string {
	var out []string
	for _, s := range t[1:] {
		if a, ok := s.(hcl.TraverseAttr); ok {
			out = append(out, a.Name)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CheckTFVars checks an example variables file against a root module:
// every key is a variable of it, and every required variable is set.
func CheckTFVars(m *TFModule, path string) []error {
	src, err := os.ReadFile(path)
	if err != nil {
		return []error{err}
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return []error{fmt.Errorf("%w: %s", ErrTerraform, diags.Error())}
	}
	attrs, diags := f.Body.JustAttributes()
	if diags.HasErrors() {
		return []error{fmt.Errorf("%w: %s", ErrTerraform, diags.Error())}
	}
	var errs []error
	for name, a := range attrs {
		if _, ok := m.Variables[name]; !ok {
			errs = append(errs, fmt.Errorf("%w: %s: %s is not a variable of %s", ErrTerraform, a.NameRange.String(), name, m.Dir))
		}
		if _, d := a.Expr.Value(nil); d.HasErrors() {
			errs = append(errs, fmt.Errorf("%w: %s: %s is not a constant value: %s", ErrTerraform, a.NameRange.String(), name, d.Error()))
		}
	}
	for _, name := range sortedKeys(m.Variables) {
		if _, ok := attrs[name]; m.Variables[name].Required && !ok {
			errs = append(errs, fmt.Errorf("%w: %s: required variable %s is not set", ErrTerraform, path, name))
		}
	}
	return errs
}

// checkovSkip is a waiver: #checkov:skip=<ID>:<reason>.
var checkovSkip = regexp.MustCompile(`checkov:skip=([A-Z0-9_]*)(:(.*))?`)

// CheckovWaivers lists the checkov waivers in the .tf files under root and
// fails each one without a check id or without a reason of a few words.
func CheckovWaivers(root string) (waivers []string, errs []error) {
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".tf" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			mt := checkovSkip.FindStringSubmatch(line)
			if mt == nil {
				continue
			}
			where := fmt.Sprintf("%s:%d", path, i+1)
			switch {
			case !regexp.MustCompile(`^CKV2?_[A-Z]+_[0-9]+$`).MatchString(mt[1]):
				errs = append(errs, fmt.Errorf("%w: %s: waiver without a check id", ErrTerraform, where))
			case len(strings.Fields(mt[3])) < 4:
				errs = append(errs, fmt.Errorf("%w: %s: waiver of %s without a reason", ErrTerraform, where, mt[1]))
			default:
				waivers = append(waivers, where+" "+mt[1])
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	slices.Sort(waivers)
	return waivers, errs
}
