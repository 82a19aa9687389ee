package kernels_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
	"github.com/helixflow/helixflow/workers/backend/cuda/internal/cpusim"
	"github.com/helixflow/helixflow/workers/backend/cuda/kernels"
)

// every builds each kernel the generator can write, for every type it
// takes: what the networks in testdata launch and the rest.
func every(t *testing.T) []kernels.Kernel {
	t.Helper()
	var ks []kernels.Kernel
	add := func(k kernels.Kernel, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		ks = append(ks, k)
	}
	floats := []graph.DType{graph.Float, graph.Float16, graph.BFloat16}
	for _, d := range floats {
		add(kernels.SoftmaxRows(d))
		add(kernels.SoftmaxStrided(d))
		add(kernels.LayerNorm(d))
		add(kernels.RowMean(d))
		add(kernels.Im2Col(d))
		add(kernels.Pool2D(d, true))
		add(kernels.Pool2D(d, false))
		for _, op := range []string{"Add", "Sub", "Mul", "Div", "Pow", "Relu", "Sigmoid", "Tanh", "Erf", "Gelu", "Sqrt", "Exp", "Neg"} {
			e := kernels.Elementwise{Inputs: []graph.DType{d, d}}
			args := []int{0, 1}
			switch op {
			case "Add", "Sub", "Mul", "Div", "Pow":
			default:
				args = []int{0}
			}
			e.Ops = []kernels.EWOp{{Op: "Literal", DType: d, Literal: 0.5}, {Op: op, Args: args, DType: d}, {Op: "Mul", Args: []int{3, 2}, DType: d}}
			add(e.Kernel())
		}
		add(kernels.Elementwise{Inputs: []graph.DType{d}, Ops: []kernels.EWOp{{Op: "Gelu", Args: []int{0}, DType: d, Approximate: "tanh"}}, Index32: true}.Kernel())
	}
	for _, d := range []graph.DType{graph.Int32, graph.Int64, graph.Int8, graph.Uint8, graph.Bool} {
		add(kernels.Elementwise{Inputs: []graph.DType{d, d}, Ops: []kernels.EWOp{{Op: "Add", Args: []int{0, 1}, DType: d}, {Op: "Relu", Args: []int{2}, DType: d}}}.Kernel())
	}
	for _, from := range []graph.DType{graph.Float, graph.Float16, graph.BFloat16, graph.Int32, graph.Int64, graph.Bool} {
		for _, to := range []graph.DType{graph.Float, graph.Float16, graph.BFloat16, graph.Int32, graph.Int64, graph.Bool} {
			add(kernels.Elementwise{Inputs: []graph.DType{from}, Ops: []kernels.EWOp{{Op: "Cast", Args: []int{0}, DType: to}}}.Kernel())
		}
	}
	for _, size := range []int{1, 2, 4, 8} {
		ks = append(ks, kernels.Copy(size, false), kernels.Copy(size, true))
		add(kernels.Gather(size, graph.Int32))
		add(kernels.Gather(size, graph.Int64))
	}
	return ks
}

func TestKernelNamesFollowTheirText(t *testing.T) {
	a, _ := kernels.SoftmaxRows(graph.Float)
	b, _ := kernels.SoftmaxRows(graph.Float)
	c, _ := kernels.SoftmaxRows(graph.Float16)
	if a.Name != b.Name || a.Name == c.Name {
		t.Errorf("names %s %s %s: the same kernel must get the same name, another kernel another", a.Name, b.Name, c.Name)
	}
	if _, err := kernels.SoftmaxRows(graph.Int32); err == nil {
		t.Error("a softmax over int32 was written")
	}
	if _, err := (kernels.Elementwise{Inputs: []graph.DType{graph.Int32}, Ops: []kernels.EWOp{{Op: "Erf", Args: []int{0}, DType: graph.Int32}}}).Kernel(); err == nil {
		t.Error("Erf over int32 was written")
	}
}

// TestKernelsCompileAsCPlusPlus compiles every kernel with g++ against the
// host emulation of CUDA's built-ins, with warnings as errors.
func TestKernelsCompileAsCPlusPlus(t *testing.T) {
	if _, err := exec.LookPath("g++"); err != nil {
		testdeps.Missing(t, "g++ not found")
	}
	if _, err := cpusim.Build(t.TempDir(), kernels.Module(every(t))); err != nil {
		t.Fatal(err)
	}
}

// clang is clang 14 (Debian's clang-14), which compiles CUDA to PTX
// without the CUDA toolkit.
func clang(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"clang-14", "clang"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testdeps.Missing(t, "clang-14 not found (make deps installs it)")
	return ""
}

// TestKernelsCompileToPTX compiles every kernel as CUDA for sm_80 with
// clang's NVPTX backend: the source is valid CUDA C (device qualifiers,
// inline PTX, intrinsics), and each kernel comes out as a PTX entry under
// its own unmangled name, as cuModuleGetFunction looks it up. NVRTC is
// another compiler; this does not prove NVRTC accepts the source.
func TestKernelsCompileToPTX(t *testing.T) {
	cc := clang(t)
	dir := t.TempDir()
	ks := every(t)
	src := filepath.Join(dir, "kernels.cu")
	if err := os.WriteFile(src, []byte(kernels.Module(ks)), 0o644); err != nil {
		t.Fatal(err)
	}
	pre, err := filepath.Abs(filepath.Join("testdata", "clang_cuda.h"))
	if err != nil {
		t.Fatal(err)
	}
	ptx := filepath.Join(dir, "kernels.ptx")
	cmd := exec.Command(cc, "-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=sm_80", "-nocudainc", "-nocudalib",
		"-Xclang", "-target-feature", "-Xclang", "+ptx70", "-Werror", "-include", pre, "-O2", "-S", "-o", ptx, src)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	data, err := os.ReadFile(ptx)
	if err != nil {
		t.Fatal(err)
	}
	var entries []string
	for _, m := range regexp.MustCompile(`\.entry\s+(\w+)\(`).FindAllStringSubmatch(string(data), -1) {
		entries = append(entries, m[1])
	}
	for _, k := range ks {
		if !slices.Contains(entries, k.Name) {
			t.Errorf("kernel %s is not an entry of the PTX", k.Name)
		}
	}
	if !strings.Contains(string(data), "cvt.rn.f16.f32") {
		t.Error("the float16 conversion did not compile to cvt.rn.f16.f32")
	}
}
