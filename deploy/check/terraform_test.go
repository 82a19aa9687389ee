package check

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/internal/testdeps"
)

const terraformDir = "../../terraform"

func tfDirs(t *testing.T, kind string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(terraformDir, kind, "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatalf("no terraform/%s", kind)
	}
	return dirs
}

// TestTerraformModules parses every module and env with hcl/v2 and checks
// references, inputs, outputs and providers (TFModule.Check).
func TestTerraformModules(t *testing.T) {
	for _, dir := range append(tfDirs(t, "modules"), tfDirs(t, "envs")...) {
		t.Run(strings.TrimPrefix(dir, terraformDir+"/"), func(t *testing.T) {
			m, err := LoadTFModule(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, err := range m.Check() {
				t.Error(err)
			}
		})
	}
}

// TestTerraformEnvs: each env calls one cloud module and the helixflow
// module, sets every required variable in terraform.tfvars.example, and
// outputs the gateway URL, token URL and dashboards.
func TestTerraformEnvs(t *testing.T) {
	for _, dir := range tfDirs(t, "envs") {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m, err := LoadTFModule(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, err := range CheckTFVars(m, filepath.Join(dir, "terraform.tfvars.example")) {
				t.Error(err)
			}
			for _, o := range []string{"gateway_url", "token_url", "dashboards"} {
				if _, ok := m.Outputs[o]; !ok {
					t.Errorf("no output %s", o)
				}
			}
			var sources []string
			for _, c := range m.Calls {
				sources = append(sources, filepath.Base(c.Source))
			}
			slices.Sort(sources)
			if len(sources) != 2 || sources[1] != "helixflow" {
				t.Errorf("modules %v: want one cloud module and helixflow", sources)
			}
		})
	}
}

// TestTerraformCloudModulesAgree: the three cloud modules have the same
// outputs, the interface the helixflow module is wired to.
func TestTerraformCloudModulesAgree(t *testing.T) {
	var first []string
	var firstDir string
	for _, name := range []string{"aws-eks", "gcp-gke", "azure-aks"} {
		dir := filepath.Join(terraformDir, "modules", name)
		m, err := LoadTFModule(dir)
		if err != nil {
			t.Fatal(err)
		}
		outs := slices.Sorted(maps.Keys(m.Outputs))
		if first == nil {
			first, firstDir = outs, name
			continue
		}
		if !slices.Equal(outs, first) {
			t.Errorf("%s outputs %v, %s outputs %v", name, outs, firstDir, first)
		}
	}
}

// TestTerraformChecker feeds TFModule.Check modules that break each rule.
func TestTerraformChecker(t *testing.T) {
	callee := `
terraform {
  required_providers {
    random = { source = "hashicorp/random" }
  }
}
variable "need" { type = string }
variable "opt" {
  type    = string
  default = "x"
}
resource "random_id" "x" {
  byte_length = 4
  keepers     = { a = var.need, b = var.opt }
}
output "id" { value = random_id.x.hex }
`
	cases := []struct{ name, root, want string }{
		{"undeclared var", `output "o" { value = var.nope }`, "var.nope is not declared"},
		{"unused var", "variable \"unused\" {\n  type = string\n}\n", "variable unused is declared but not used"},
		{"undeclared local", `output "o" { value = local.nope }`, "local.nope is not declared"},
		{"missing resource", `output "o" { value = aws_vpc.main.id }`, "aws_vpc.main is not a resource"},
		{"missing input", "module \"c\" {\n  source = \"./callee\"\n}\n", "required input need"},
		{"unknown input", "module \"c\" {\n  source = \"./callee\"\n  need = \"a\"\n  typo = \"b\"\n}\n", "typo is not a variable"},
		{"missing output", "module \"c\" {\n  source = \"./callee\"\n  need = \"a\"\n}\noutput \"o\" { value = module.c.nope }\n", "has no output nope"},
		{"provider not required", "resource \"random_id\" \"x\" {\n  byte_length = 4\n}\n", "provider random is not in required_providers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "callee"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "callee", "main.tf"), []byte(callee), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(tc.root), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := LoadTFModule(dir)
			if err != nil {
				t.Fatal(err)
			}
			errs := m.Check()
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), tc.want) }) {
				t.Errorf("want an error with %q, got %v", tc.want, errs)
			}
		})
	}
	// A well-formed pair passes.
	dir := t.TempDir()
	_ = os.MkdirAll(filepath.Join(dir, "callee"), 0o755)
	_ = os.WriteFile(filepath.Join(dir, "callee", "main.tf"), []byte(callee), 0o644)
	root := "module \"c\" {\n  source = \"./callee\"\n  need = \"a\"\n}\noutput \"o\" { value = module.c.id }\n"
	_ = os.WriteFile(filepath.Join(dir, "main.tf"), []byte(root), 0o644)
	m, err := LoadTFModule(dir)
	if err != nil {
		t.Fatal(err)
	}
	if errs := m.Check(); len(errs) > 0 {
		t.Errorf("a good module fails: %v", errs)
	}
}

// TestCheckovWaivers: every waiver in terraform/ names a check and gives
// its reason.
func TestCheckovWaivers(t *testing.T) {
	waivers, errs := CheckovWaivers(terraformDir)
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("%d checkov waivers:\n%s", len(waivers), strings.Join(waivers, "\n"))
}

// tofuBinary is OpenTofu as make deps builds it (HELIX_TOFU overrides).
func tofuBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HELIX_TOFU"); p != "" {
		return p
	}
	matches, _ := filepath.Glob(filepath.Join(repoRoot, ".tools", "tofu-v*"))
	if len(matches) == 0 {
		testdeps.Missing(t, "OpenTofu not found in .tools/ (make deps builds it)")
	}
	p, _ := filepath.Abs(matches[len(matches)-1])
	return p
}

// TestTerraformVariableValidation runs each module's variable validation
// blocks in OpenTofu itself: its variables.tf (variable blocks only, no
// provider needed) is planned with the bad values in
// testdata/tfvars/<module>.bad.tfvars, whose "# want:" lines name the
// errors that must appear, and with the good values in
// <module>.good.tfvars, which must pass.
func TestTerraformVariableValidation(t *testing.T) {
	tofu := tofuBinary(t)
	bads, _ := filepath.Glob("testdata/tfvars/*.bad.tfvars")
	if len(bads) == 0 {
		t.Fatal("no testdata/tfvars/*.bad.tfvars")
	}
	for _, bad := range bads {
		module := strings.TrimSuffix(filepath.Base(bad), ".bad.tfvars")
		t.Run(module, func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(filepath.Join(terraformDir, "modules", module, "variables.tf"))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "variables.tf"), src, 0o644); err != nil {
				t.Fatal(err)
			}
			good, _ := filepath.Abs(strings.TrimSuffix(bad, ".bad.tfvars") + ".good.tfvars")
			if out, err := tofuPlan(t, tofu, dir, good); err != nil {
				t.Fatalf("good values refused: %v\n%s", err, out)
			}
			badAbs, _ := filepath.Abs(bad)
			out, err := tofuPlan(t, tofu, dir, badAbs)
			if err == nil {
				t.Fatalf("bad values accepted:\n%s", out)
			}
			b, _ := os.ReadFile(bad)
			var n int
			for line := range strings.Lines(string(b)) {
				if w, ok := strings.CutPrefix(strings.TrimSpace(line), "# want:"); ok {
					n++
					if !strings.Contains(out, strings.TrimSpace(w)) {
						t.Errorf("tofu's errors lack %q", strings.TrimSpace(w))
					}
				}
			}
			if n == 0 {
				t.Fatalf("%s: no '# want:' line", bad)
			}
			if t.Failed() {
				t.Logf("tofu said:\n%s", out)
			}
		})
	}
}

func tofuPlan(t *testing.T, tofu, dir, varFile string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cliConfig := filepath.Join(t.TempDir(), "tofurc")
	if err := os.WriteFile(cliConfig, nil, 0o644); err != nil {
		return "", err
	}
	for _, args := range [][]string{
		{"init", "-backend=false", "-input=false", "-no-color"},
		{"plan", "-input=false", "-no-color", "-lock=false", "-refresh=false", "-var-file=" + varFile},
	} {
		cmd := exec.CommandContext(ctx, tofu, args...)
		cmd.Dir = dir
		// An empty CLI configuration: nothing of the machine's applies.
		cmd.Env = append(os.Environ(), "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1", "TF_CLI_CONFIG_FILE="+cliConfig)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return out.String(), errors.Join(err, errors.New(strings.Join(args, " ")))
		}
	}
	return out.String(), nil
}
