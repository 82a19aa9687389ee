package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/shm"
	"github.com/helixflow/helixflow/workers/tensor"
)

// shmHandler returns a handler over the echo service with a registry in a
// temporary folder, which it returns.
func shmHandler(t *testing.T) (http.Handler, string) {
	t.Helper()
	dir := t.TempDir()
	reg := shm.New(shm.Options{Dir: dir})
	t.Cleanup(reg.Close)
	opts := quiet
	opts.SharedMemory = reg
	return NewHandler(newFakeService(), opts), dir
}

func writeObject(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readObject(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func register(t *testing.T, h http.Handler, name, body string) {
	t.Helper()
	if r := do(t, h, "POST", "/v2/systemsharedmemory/region/"+name+"/register", []byte(body), nil); r.status != 200 {
		t.Fatalf("register %s: %d %s", name, r.status, r.body)
	}
}

func wantError(t *testing.T, r response, status int, part string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d (%s), want %d", r.status, r.body, status)
	}
	if msg := errorMessage(t, r); !strings.Contains(msg, part) {
		t.Fatalf("error %q does not contain %q", msg, part)
	}
}

func TestSystemSharedMemoryEndpoints(t *testing.T) {
	h, dir := shmHandler(t)
	writeObject(t, dir, "input_simple", make([]byte, 128))
	// The body tritonclient sends.
	register(t, h, "input_data", `{"key": "/input_simple", "offset": 0, "byte_size": 128}`)
	register(t, h, "tail", `{"key":"/input_simple","offset":64,"byte_size":64}`)

	r := do(t, h, "GET", "/v2/systemsharedmemory/status", nil, nil)
	if r.status != 200 || string(r.body) != `[{"name":"input_data","key":"/input_simple","offset":0,"byte_size":128},{"name":"tail","key":"/input_simple","offset":64,"byte_size":64}]` {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	r = do(t, h, "GET", "/v2/systemsharedmemory/region/tail/status", nil, nil)
	if r.status != 200 || string(r.body) != `[{"name":"tail","key":"/input_simple","offset":64,"byte_size":64}]` {
		t.Fatalf("status of tail: %d %s", r.status, r.body)
	}

	bad := []struct {
		name, region, body string
		status             int
		want               string
	}{
		{"double register", "input_data", `{"key":"/input_simple","offset":0,"byte_size":8}`, 400, "shared memory region 'input_data' already in manager"},
		{"key with slash", "x", `{"key":"/a/b","byte_size":8}`, 400, "shared memory key '/a/b' must be a single name"},
		{"region too small", "x", `{"key":"/input_simple","offset":0,"byte_size":129}`, 400, "holds 128 bytes, fewer than offset 0 + byte_size 129"},
		{"offset past end", "x", `{"key":"/input_simple","offset":128,"byte_size":1}`, 400, "fewer than offset 128 + byte_size 1"},
		{"negative offset", "x", `{"key":"/input_simple","offset":-1,"byte_size":1}`, 400, "'offset' must be a non-negative integer, got -1"},
		{"overflowing offset", "x", `{"key":"/input_simple","offset":18446744073709551616,"byte_size":1}`, 400, "'offset' must be a non-negative integer"},
		{"offset + size overflows", "x", `{"key":"/input_simple","offset":18446744073709551615,"byte_size":2}`, 400, "is too large"},
		{"no byte size", "x", `{"key":"/input_simple"}`, 400, "needs 'byte_size'"},
		{"key not a string", "x", `{"key":7,"byte_size":1}`, 400, "needs 'key', a string"},
		{"malformed JSON", "x", `{"key":`, 400, "shared memory register request"},
		{"missing object", "x", `{"key":"/nope","byte_size":1}`, 400, "no shared memory object with key '/nope'"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, h, "POST", "/v2/systemsharedmemory/region/"+tc.region+"/register", []byte(tc.body), nil)
			wantError(t, r, tc.status, tc.want)
		})
	}
	wantError(t, do(t, h, "POST", "/v2/systemsharedmemory/register", []byte(`{"key":"/input_simple","byte_size":1}`), nil), 400, "register needs a region name")

	if r := do(t, h, "POST", "/v2/systemsharedmemory/region/tail/unregister", nil, nil); r.status != 200 {
		t.Fatalf("unregister: %d %s", r.status, r.body)
	}
	if r := do(t, h, "POST", "/v2/systemsharedmemory/region/never/unregister", nil, nil); r.status != 200 {
		t.Fatalf("unregister unknown: %d %s", r.status, r.body)
	}
	wantError(t, do(t, h, "GET", "/v2/systemsharedmemory/region/tail/status", nil, nil), 404, "Unable to find system shared memory region: 'tail'")
	if r := do(t, h, "POST", "/v2/systemsharedmemory/unregister", nil, nil); r.status != 200 {
		t.Fatalf("unregister all: %d %s", r.status, r.body)
	}
	if r := do(t, h, "GET", "/v2/systemsharedmemory/status", nil, nil); string(r.body) != "[]" {
		t.Fatalf("after unregistering all: %s", r.body)
	}

	// CUDA: nothing registered, unregister succeeds, register explains.
	if r := do(t, h, "GET", "/v2/cudasharedmemory/status", nil, nil); r.status != 200 || string(r.body) != "[]" {
		t.Fatalf("cuda status: %d %s", r.status, r.body)
	}
	if r := do(t, h, "POST", "/v2/cudasharedmemory/unregister", nil, nil); r.status != 200 {
		t.Fatalf("cuda unregister: %d %s", r.status, r.body)
	}
	wantError(t, do(t, h, "POST", "/v2/cudasharedmemory/region/c/register", []byte(`{"raw_handle":{"b64":"AA=="},"device_id":0,"byte_size":64}`), nil),
		501, "CUDA shared memory needs the cuda backend on a GPU; this worker has none")
}

// TestInferSharedMemory follows simple_http_shm_client.py: inputs in one
// region, outputs (asked for as binary data) written to another.
func TestInferSharedMemory(t *testing.T) {
	h, dir := shmHandler(t)
	in0, in1 := le32(0, 1, 2, 3), le32(1, 1, 1, 1)
	writeObject(t, dir, "input_simple", append(append([]byte{}, in0...), in1...))
	writeObject(t, dir, "output_simple", make([]byte, 32))
	register(t, h, "input_data", `{"key":"/input_simple","offset":0,"byte_size":32}`)
	register(t, h, "output_data", `{"key":"/output_simple","offset":0,"byte_size":32}`)

	body := `{"inputs":[` +
		`{"name":"INPUT0","shape":[1,4],"datatype":"INT32","parameters":{"shared_memory_region":"input_data","shared_memory_byte_size":16}},` +
		`{"name":"INPUT1","shape":[1,4],"datatype":"INT32","parameters":{"shared_memory_region":"input_data","shared_memory_byte_size":16,"shared_memory_offset":16}}],` +
		`"outputs":[` +
		`{"name":"INPUT0","parameters":{"binary_data":true,"shared_memory_region":"output_data","shared_memory_byte_size":16}},` +
		`{"name":"INPUT1","parameters":{"binary_data":true,"shared_memory_region":"output_data","shared_memory_byte_size":16,"shared_memory_offset":16}}]}`
	r := do(t, h, "POST", "/v2/models/simple/infer", []byte(body), nil)
	if r.status != 200 {
		t.Fatalf("infer: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q: shared-memory outputs send no binary data", ct)
	}
	want := `{"model_name":"simple","model_version":"1","outputs":[` +
		`{"name":"INPUT0","datatype":"INT32","shape":[1,4],"parameters":{"shared_memory_region":"output_data","shared_memory_byte_size":16}},` +
		`{"name":"INPUT1","datatype":"INT32","shape":[1,4],"parameters":{"shared_memory_region":"output_data","shared_memory_byte_size":16,"shared_memory_offset":16}}]}`
	if string(r.body) != want {
		t.Errorf("body\n%s\nwant\n%s", r.body, want)
	}
	if out := readObject(t, dir, "output_simple"); !bytes.Equal(out, append(append([]byte{}, in0...), in1...)) {
		t.Fatalf("output region = %v", out)
	}
}

// TestInferSharedMemoryBytes follows simple_http_shm_string_client.py.
func TestInferSharedMemoryBytes(t *testing.T) {
	h, dir := shmHandler(t)
	in := tensor.EncodeBytes([][]byte{[]byte("10"), []byte("-3")})
	writeObject(t, dir, "in", in)
	writeObject(t, dir, "out", make([]byte, len(in)))
	register(t, h, "in", `{"key":"/in","offset":0,"byte_size":`+itoa(len(in))+`}`)
	register(t, h, "out", `{"key":"/out","offset":0,"byte_size":`+itoa(len(in))+`}`)
	body := `{"inputs":[{"name":"S","shape":[1,2],"datatype":"BYTES","parameters":{"shared_memory_region":"in","shared_memory_byte_size":` + itoa(len(in)) + `}}],` +
		`"outputs":[{"name":"S","parameters":{"binary_data":true,"shared_memory_region":"out","shared_memory_byte_size":` + itoa(len(in)) + `}}]}`
	if r := do(t, h, "POST", "/v2/models/simple/infer", []byte(body), nil); r.status != 200 {
		t.Fatalf("infer: %d %s", r.status, r.body)
	}
	if got := readObject(t, dir, "out"); !bytes.Equal(got, in) {
		t.Fatalf("out = %q", got)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestInferSharedMemoryBadInput(t *testing.T) {
	h, dir := shmHandler(t)
	writeObject(t, dir, "obj", make([]byte, 64))
	register(t, h, "r", `{"key":"/obj","byte_size":64}`)
	input := func(params string) string {
		return `{"name":"X","shape":[4],"datatype":"INT32","parameters":{` + params + `}}`
	}
	okIn := input(`"shared_memory_region":"r","shared_memory_byte_size":16`)
	tests := []struct {
		name, body string
		status     int
		want       string
	}{
		{"unregistered region", `{"inputs":[` + input(`"shared_memory_region":"nope","shared_memory_byte_size":16`) + `]}`,
			400, "input 'X': Unable to find shared memory region: 'nope'"},
		{"offset past end", `{"inputs":[` + input(`"shared_memory_region":"r","shared_memory_byte_size":16,"shared_memory_offset":65`) + `]}`,
			400, "Invalid offset for shared memory region: 'r': offset 65 is past the region's end (it holds 64 bytes)"},
		{"window past end", `{"inputs":[` + input(`"shared_memory_region":"r","shared_memory_byte_size":16,"shared_memory_offset":50`) + `]}`,
			400, "offset 50 + byte_size 16 is past the region's end"},
		{"negative offset", `{"inputs":[` + input(`"shared_memory_region":"r","shared_memory_byte_size":16,"shared_memory_offset":-1`) + `]}`,
			400, "'shared_memory_offset' is -1; it must not be negative"},
		{"huge offset", `{"inputs":[` + input(`"shared_memory_region":"r","shared_memory_byte_size":16,"shared_memory_offset":18446744073709551615`) + `]}`,
			400, "past the region's end"},
		{"float size", `{"inputs":[` + input(`"shared_memory_region":"r","shared_memory_byte_size":1.5`) + `]}`,
			400, "'shared_memory_byte_size' must be an integer"},
		{"size mismatch", `{"inputs":[` + input(`"shared_memory_region":"r","shared_memory_byte_size":12`) + `]}`,
			400, "input 'X'"},
		{"region and data", `{"inputs":[{"name":"X","shape":[1],"datatype":"INT32","data":[1],"parameters":{"shared_memory_region":"r","shared_memory_byte_size":4}}]}`,
			400, "must set only one of the following fields"},
		{"output region too small", `{"inputs":[` + okIn + `],"outputs":[{"name":"X","parameters":{"shared_memory_region":"r","shared_memory_byte_size":8}}]}`,
			400, "shared memory size specified with the request for output 'X' (8 bytes) should be at least 16 bytes to hold the results"},
		{"output unregistered", `{"inputs":[` + okIn + `],"outputs":[{"name":"X","parameters":{"shared_memory_region":"gone","shared_memory_byte_size":8}}]}`,
			400, "output 'X': Unable to find shared memory region: 'gone'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, do(t, h, "POST", "/v2/models/simple/infer", []byte(tc.body), nil), tc.status, tc.want)
		})
	}
}

// TestSharedMemoryThroughGateway: requests carrying the gateway's client
// header may not register regions or use them.
func TestSharedMemoryThroughGateway(t *testing.T) {
	h, dir := shmHandler(t)
	writeObject(t, dir, "obj", make([]byte, 64))
	register(t, h, "r", `{"key":"/obj","byte_size":64}`)
	gw := map[string]string{wire.HeaderClient: "client-1"}
	msg := wire.SharedMemoryThroughGateway
	wantError(t, do(t, h, "POST", "/v2/systemsharedmemory/region/r2/register", []byte(`{"key":"/obj","byte_size":64}`), gw), 400, msg)
	wantError(t, do(t, h, "POST", "/v2/cudasharedmemory/region/c/register", []byte(`{}`), gw), 400, msg)
	in := `{"inputs":[{"name":"X","shape":[4],"datatype":"INT32","parameters":{"shared_memory_region":"r","shared_memory_byte_size":16}}]}`
	wantError(t, do(t, h, "POST", "/v2/models/simple/infer", []byte(in), gw), 400, msg)
	out := `{"inputs":[{"name":"X","shape":[1],"datatype":"INT32","data":[1]}],"outputs":[{"name":"X","parameters":{"shared_memory_region":"r","shared_memory_byte_size":4}}]}`
	wantError(t, do(t, h, "POST", "/v2/models/simple/infer", []byte(out), gw), 400, msg)
	plain := `{"inputs":[{"name":"X","shape":[1],"datatype":"INT32","data":[1]}]}`
	if r := do(t, h, "POST", "/v2/models/simple/infer", []byte(plain), gw); r.status != 200 {
		t.Fatalf("plain request through the gateway: %d %s", r.status, r.body)
	}
}

// FuzzSharedMemoryRequest decodes arbitrary inference bodies against a
// registered region and arbitrary register bodies: nothing panics, reads
// stay inside the region, and every refusal is a client error.
func FuzzSharedMemoryRequest(f *testing.F) {
	f.Add([]byte(`{"inputs":[{"name":"X","shape":[4],"datatype":"INT32","parameters":{"shared_memory_region":"r","shared_memory_byte_size":16,"shared_memory_offset":48}}],"outputs":[{"name":"X","parameters":{"shared_memory_region":"r","shared_memory_byte_size":16}}]}`))
	f.Add([]byte(`{"inputs":[{"name":"X","shape":[1],"datatype":"BYTES","parameters":{"shared_memory_region":"r","shared_memory_byte_size":-5,"shared_memory_offset":"x"}}]}`))
	f.Add([]byte(`{"key":"/obj","offset":18446744073709551615,"byte_size":1}`))
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "obj"), make([]byte, 64), 0o600); err != nil {
		f.Fatal(err)
	}
	reg := shm.New(shm.Options{Dir: dir, MaxRegions: 4})
	f.Cleanup(reg.Close)
	if err := reg.Register("r", "/obj", 0, 64); err != nil {
		f.Fatal(err)
	}
	sm := &sharedMemory{reg: reg}
	f.Fuzz(func(t *testing.T, body []byte) {
		call, err := decodeRequest("m", "", body, len(body), 1<<20, sm)
		if err != nil {
			if s := httpStatus(err); s != 400 {
				t.Fatalf("status %d for %v", s, err)
			}
		} else {
			call.shmOut.Release()
		}
		key, offset, size, err := parseRegister(body)
		if err != nil {
			if s := httpStatus(err); s != 400 {
				t.Fatalf("register: status %d for %v", s, err)
			}
			return
		}
		if err := reg.Register("fuzz", key, offset, size); err == nil {
			reg.Unregister("fuzz")
		} else if s := httpStatus(err); s >= 500 {
			t.Fatalf("register %q %d %d: status %d for %v", key, offset, size, s, err)
		}
	})
}
