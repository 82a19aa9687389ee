package onnxruntime

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/tensor"
)

// One Backend serves every test: ORT's environment is process-global.
var shared struct {
	once    sync.Once
	backend *Backend
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.backend != nil {
		if err := shared.backend.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the shared backend:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testBackend returns the shared Backend. Without the library the test is
// skipped, except in CI, where it fails.
func testBackend(tb testing.TB) *Backend {
	tb.Helper()
	shared.once.Do(func() {
		path, err := FindLibrary()
		if err != nil {
			shared.err = err
			return
		}
		shared.backend, shared.err = New(Options{LibraryPath: path, IntraOpThreads: 1, InterOpThreads: 1})
	})
	if shared.err != nil {
		testdeps.Missing(tb, "onnxruntime unavailable (make deps): %v", shared.err)
	}
	return shared.backend
}

func model(name string) string { return filepath.Join("testdata", name+".onnx") }

// newTestInstance loads testdata/<name>.onnx and closes it at cleanup.
func newTestInstance(tb testing.TB, name string, params map[string]string) backend.Instance {
	tb.Helper()
	b := testBackend(tb)
	inst, err := b.NewInstance(context.Background(), backend.InstanceSpec{
		ModelName:  name,
		ModelPath:  model(name),
		Device:     "cpu",
		Parameters: params,
	})
	if err != nil {
		tb.Fatalf("NewInstance(%s): %v", name, err)
	}
	tb.Cleanup(func() {
		if err := inst.Close(); err != nil {
			tb.Errorf("Close(%s): %v", name, err)
		}
	})
	return inst
}

func int32Bytes(v ...int32) []byte {
	out := make([]byte, 0, 4*len(v))
	for _, x := range v {
		out = binary.LittleEndian.AppendUint32(out, uint32(x))
	}
	return out
}

func int32s(b []byte) []int32 {
	out := make([]int32, len(b)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func float32Bytes(v ...float32) []byte {
	out := make([]byte, 0, 4*len(v))
	for _, x := range v {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(x))
	}
	return out
}

// simpleInputs builds INPUT0 = 0..n-1 and INPUT1 = 1 for `batch` rows of 16.
func simpleInputs(batch int) []tensor.Tensor {
	a := make([]int32, 16*batch)
	b := make([]int32, 16*batch)
	for i := range a {
		a[i] = int32(i)
		b[i] = 1
	}
	shape := []int64{int64(batch), 16}
	return []tensor.Tensor{
		{Name: "INPUT0", DataType: tensor.Int32, Shape: shape, Data: int32Bytes(a...)},
		{Name: "INPUT1", DataType: tensor.Int32, Shape: shape, Data: int32Bytes(b...)},
	}
}
