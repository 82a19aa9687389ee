package shm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/helixflow/helixflow/workers/infer"
)

// newObject creates a shared-memory object of size bytes in dir, filled
// with 0, 1, 2, ... (mod 256), and returns its key.
func newObject(t testing.TB, dir, name string, size int) string {
	t.Helper()
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return "/" + name
}

func wantErr(t *testing.T, err error, code infer.Code, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %v containing %q", code, parts)
	}
	if got := infer.CodeOf(err); got != code {
		t.Errorf("code = %v, want %v (%v)", got, code, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func TestRegisterStatusUnregister(t *testing.T) {
	dir := t.TempDir()
	g := New(Options{Dir: dir})
	t.Cleanup(g.Close)
	k := newObject(t, dir, "input_simple", 128)
	if err := g.Register("input_data", k, 0, 128); err != nil {
		t.Fatal(err)
	}
	// A key without the leading '/' names the same object, as shm_open.
	if err := g.Register("second", "input_simple", 64, 64); err != nil {
		t.Fatal(err)
	}
	st, err := g.Status("")
	if err != nil || len(st) != 2 || st[0].Name != "input_data" || st[1] != (Status{"second", "input_simple", 64, 64}) {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	st, err = g.Status("input_data")
	if err != nil || len(st) != 1 || st[0] != (Status{"input_data", "/input_simple", 0, 128}) {
		t.Fatalf("Status(input_data) = %+v, %v", st, err)
	}
	_, err = g.Status("nope")
	wantErr(t, err, infer.CodeNotFound, "Unable to find system shared memory region: 'nope'")

	wantErr(t, g.Register("input_data", k, 0, 16), infer.CodeAlreadyExists, "'input_data' already in manager")

	g.Unregister("missing") // not an error, as in Triton
	g.Unregister("input_data")
	if st, _ := g.Status(""); len(st) != 1 {
		t.Fatalf("after unregistering one: %+v", st)
	}
	// The name is free again.
	if err := g.Register("input_data", k, 0, 16); err != nil {
		t.Fatal(err)
	}
	g.Unregister("")
	if st, _ := g.Status(""); len(st) != 0 {
		t.Fatalf("after unregistering all: %+v", st)
	}
}

func TestRegisterBadInput(t *testing.T) {
	dir := t.TempDir()
	g := New(Options{Dir: dir, MaxRegions: 2})
	t.Cleanup(g.Close)
	k := newObject(t, dir, "obj", 100)
	if err := os.Mkdir(filepath.Join(dir, "folder"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "obj"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, region, key string
		offset, size      uint64
		code              infer.Code
		parts             []string
	}{
		{"key with slash", "r", "/a/b", 0, 1, infer.CodeInvalidArgument, []string{"'/a/b'", "single name"}},
		{"key escaping the folder", "r", "/../etc/passwd", 0, 1, infer.CodeInvalidArgument, []string{"single name"}},
		{"dot-dot key", "r", "/..", 0, 1, infer.CodeInvalidArgument, []string{"not a valid"}},
		{"empty key", "r", "/", 0, 1, infer.CodeInvalidArgument, []string{"empty"}},
		{"NUL in key", "r", "/a\x00b", 0, 1, infer.CodeInvalidArgument, []string{"NUL"}},
		{"long key", "r", "/" + strings.Repeat("k", 256), 0, 1, infer.CodeInvalidArgument, []string{"at most 255"}},
		{"empty name", "", k, 0, 1, infer.CodeInvalidArgument, []string{"name is empty"}},
		{"long name", strings.Repeat("n", MaxNameLength+1), k, 0, 1, infer.CodeInvalidArgument, []string{"at most"}},
		{"missing object", "r", "/absent", 0, 1, infer.CodeInvalidArgument, []string{"'/absent'", "no shared memory object"}},
		{"zero size", "r", k, 0, 0, infer.CodeInvalidArgument, []string{"byte_size must be greater than 0"}},
		{"object too small", "r", k, 0, 101, infer.CodeInvalidArgument, []string{"holds 100 bytes", "offset 0 + byte_size 101"}},
		{"offset past end", "r", k, 100, 1, infer.CodeInvalidArgument, []string{"holds 100 bytes", "offset 100"}},
		{"overflowing offset", "r", k, 1<<64 - 1, 2, infer.CodeInvalidArgument, []string{"too large"}},
		{"huge size", "r", k, 0, 1 << 63, infer.CodeInvalidArgument, []string{"too large"}},
		{"folder", "r", "/folder", 0, 1, infer.CodeInvalidArgument, []string{"key '/folder'", "is a directory"}},
		{"symlink", "r", "/link", 0, 1, infer.CodeInvalidArgument, []string{"'/link'"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, g.Register(tc.region, tc.key, tc.offset, tc.size), tc.code, tc.parts...)
		})
	}
	if st, _ := g.Status(""); len(st) != 0 {
		t.Fatalf("failed registrations left regions: %+v", st)
	}
	for i := range 2 {
		if err := g.Register(fmt.Sprint("r", i), k, 0, 10); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, g.Register("r2", k, 0, 10), infer.CodeResourceExhausted, "2 regions are registered")
}

func TestReadWriteBounds(t *testing.T) {
	dir := t.TempDir()
	g := New(Options{Dir: dir})
	t.Cleanup(g.Close)
	// An offset that is not page aligned: the window starts mid-page.
	k := newObject(t, dir, "obj", 3*4096)
	const off = 4096 + 100
	if err := g.Register("w", k, off, 200); err != nil {
		t.Fatal(err)
	}
	r, err := g.Acquire("w")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release(r)
	b, err := r.Read(0, 4)
	if err != nil || !bytes.Equal(b, []byte{off % 256, (off + 1) % 256, (off + 2) % 256, (off + 3) % 256}) {
		t.Fatalf("Read = %v, %v", b, err)
	}
	if err := r.Write(196, []byte{9, 9, 9, 9}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "obj"))
	if !bytes.Equal(raw[off+196:off+200], []byte{9, 9, 9, 9}) || raw[off+200] != (off+200)%256 {
		t.Fatalf("write landed wrong: %v", raw[off+194:off+202])
	}
	if b, err := r.Read(200, 0); err != nil || len(b) != 0 {
		t.Errorf("empty read at the end = %v, %v", b, err)
	}
	_, err = r.Read(201, 0)
	wantErr(t, err, infer.CodeInvalidArgument, "Invalid offset for shared memory region: 'w'", "offset 201", "holds 200 bytes")
	_, err = r.Read(100, 101)
	wantErr(t, err, infer.CodeInvalidArgument, "offset 100 + byte_size 101", "holds 200 bytes")
	_, err = r.Read(1, 1<<64-1) // would overflow offset+size
	wantErr(t, err, infer.CodeInvalidArgument, "past the region's end")
	wantErr(t, r.Write(199, []byte{1, 2}), infer.CodeInvalidArgument, "offset 199 + byte_size 2")
}

func TestInputsAndOutputs(t *testing.T) {
	dir := t.TempDir()
	g := New(Options{Dir: dir})
	t.Cleanup(g.Close)
	k := newObject(t, dir, "obj", 64)
	if err := g.Register("r", k, 0, 64); err != nil {
		t.Fatal(err)
	}
	b, err := g.ReadInput("INPUT1", Ref{Region: "r", Offset: 8, ByteSize: 4})
	if err != nil || !bytes.Equal(b, []byte{8, 9, 10, 11}) {
		t.Fatalf("ReadInput = %v, %v", b, err)
	}
	_, err = g.ReadInput("INPUT0", Ref{Region: "gone", ByteSize: 4})
	wantErr(t, err, infer.CodeInvalidArgument, "input 'INPUT0'", "Unable to find shared memory region: 'gone'")
	_, err = g.ReadInput("INPUT0", Ref{Region: "r", Offset: 62, ByteSize: 4})
	wantErr(t, err, infer.CodeInvalidArgument, "input 'INPUT0'", "offset 62 + byte_size 4")

	_, err = g.BindOutput("OUTPUT0", Ref{Region: "r", Offset: 65, ByteSize: 0})
	wantErr(t, err, infer.CodeInvalidArgument, "output 'OUTPUT0'", "offset 65")
	o0, err := g.BindOutput("OUTPUT0", Ref{Region: "r", Offset: 0, ByteSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	o1, err := g.BindOutput("OUTPUT1", Ref{Region: "r", Offset: 8, ByteSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	outs := Outputs{"OUTPUT0": o0, "OUTPUT1": o1}
	defer outs.Release()
	// OUTPUT1 does not fit: nothing is written, not even OUTPUT0.
	err = outs.WriteAll([]string{"OUTPUT0", "OUTPUT1", "OTHER"}, [][]byte{{1, 1}, {2, 2, 2, 2, 2}, {3}})
	wantErr(t, err, infer.CodeInvalidArgument, "output 'OUTPUT1' (4 bytes) should be at least 5 bytes")
	raw, _ := os.ReadFile(filepath.Join(dir, "obj"))
	if raw[0] != 0 {
		t.Fatal("a failed WriteAll wrote")
	}
	if err := outs.WriteAll([]string{"OUTPUT0", "OUTPUT1"}, [][]byte{{1, 1}, {2, 2, 2, 2}}); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(filepath.Join(dir, "obj"))
	if !bytes.Equal(raw[:12], []byte{1, 1, 2, 3, 4, 5, 6, 7, 2, 2, 2, 2}) {
		t.Fatalf("region = %v", raw[:12])
	}
}

// TestUnregisterWhileInUse: a region unregistered during a request stays
// mapped until the request releases it.
func TestUnregisterWhileInUse(t *testing.T) {
	dir := t.TempDir()
	g := New(Options{Dir: dir})
	k := newObject(t, dir, "obj", 16)
	if err := g.Register("r", k, 0, 16); err != nil {
		t.Fatal(err)
	}
	o, err := g.BindOutput("OUT", Ref{Region: "r", ByteSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	g.Unregister("")
	if _, err := g.Acquire("r"); err == nil {
		t.Fatal("unregistered region still acquirable")
	}
	if err := o.Write([]byte{7}); err != nil {
		t.Fatalf("write after unregister: %v", err)
	}
	o.Release()
	o.Release() // harmless
	if o.r != nil {
		t.Fatal("release kept the region")
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "obj"))
	if raw[0] != 7 {
		t.Fatal("write lost")
	}
}

// TestTruncatedObject: a client that shrinks the object under a mapping
// gets an error, and the worker does not crash on SIGBUS.
func TestTruncatedObject(t *testing.T) {
	dir := t.TempDir()
	g := New(Options{Dir: dir})
	t.Cleanup(g.Close)
	k := newObject(t, dir, "obj", 3*4096)
	if err := g.Register("r", k, 0, 3*4096); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, "obj"), 0); err != nil {
		t.Fatal(err)
	}
	_, err := g.ReadInput("IN", Ref{Region: "r", Offset: 8192, ByteSize: 16})
	wantErr(t, err, infer.CodeInvalidArgument, "input 'IN'", "smaller than when it was registered")
	o, err := g.BindOutput("OUT", Ref{Region: "r", Offset: 8192, ByteSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Release()
	wantErr(t, o.Write([]byte{1}), infer.CodeInvalidArgument, "could not be written")
}

// TestConcurrent registers, uses and unregisters regions from many
// goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	g := New(Options{Dir: dir, MaxRegions: 8})
	t.Cleanup(g.Close)
	k := newObject(t, dir, "obj", 4096)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprint("r", w%4)
			for i := range 200 {
				_ = g.Register(name, k, uint64(w), 64)
				if b, err := g.ReadInput("IN", Ref{Region: name, Offset: 1, ByteSize: 2}); err == nil && len(b) != 2 {
					t.Errorf("short read %v", b)
				}
				if o, err := g.BindOutput("OUT", Ref{Region: name, Offset: 60, ByteSize: 4}); err == nil {
					_ = o.Write([]byte{1, 2, 3, 4})
					o.Release()
				}
				_, _ = g.Status("")
				if i%3 == 0 {
					g.Unregister(name)
				}
			}
		}()
	}
	wg.Wait()
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		name                 string
		region, size, offset any
		want                 Ref
		ok                   bool
		err                  string
	}{
		{"no shared memory", nil, nil, nil, Ref{}, false, ""},
		{"region and size", "r", int64(64), nil, Ref{Region: "r", ByteSize: 64}, true, ""},
		{"with offset", "r", int64(64), int64(64), Ref{Region: "r", ByteSize: 64, Offset: 64}, true, ""},
		{"uint64 values", "r", uint64(1), uint64(1 << 63), Ref{Region: "r", ByteSize: 1, Offset: 1 << 63}, true, ""},
		{"size without region", nil, int64(4), nil, Ref{}, false, "no 'shared_memory_region'"},
		{"offset without region", nil, nil, int64(4), Ref{}, false, "no 'shared_memory_region'"},
		{"region not a string", int64(3), int64(4), nil, Ref{}, false, "must be a string"},
		{"empty region", "", int64(4), nil, Ref{}, false, "is empty"},
		{"no size", "r", nil, nil, Ref{}, false, "no 'shared_memory_byte_size'"},
		{"negative size", "r", int64(-1), nil, Ref{}, false, "'shared_memory_byte_size' is -1"},
		{"negative offset", "r", int64(4), int64(-4), Ref{}, false, "'shared_memory_offset' is -4"},
		{"string size", "r", "4", nil, Ref{}, false, "must be an integer, got the string \"4\""},
		{"float offset", "r", int64(4), 1.5, Ref{}, false, "1.5, not an integer"},
		{"bool size", "r", true, nil, Ref{}, false, "a boolean"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := ParseRef("input 'X'", tc.region, tc.size, tc.offset)
			if tc.err != "" {
				wantErr(t, err, infer.CodeInvalidArgument, "input 'X'", tc.err)
				return
			}
			if err != nil || ok != tc.ok || got != tc.want {
				t.Fatalf("ParseRef = %+v, %v, %v; want %+v, %v", got, ok, err, tc.want, tc.ok)
			}
		})
	}
}

// FuzzRegionBounds: no offset and size reads or writes outside the
// window, and every refusal is INVALID_ARGUMENT.
func FuzzRegionBounds(f *testing.F) {
	f.Add(uint64(0), uint64(16), uint64(0), uint64(16))
	f.Add(uint64(5), uint64(10), uint64(9), uint64(2))
	f.Add(uint64(4095), uint64(2), uint64(1<<63), uint64(1<<63))
	f.Add(uint64(0), uint64(1), uint64(1), uint64(1<<64-1))
	dir := f.TempDir()
	newObject(f, dir, "obj", 8192)
	f.Fuzz(func(t *testing.T, regOff, regSize, off, size uint64) {
		g := New(Options{Dir: dir})
		defer g.Close()
		if err := g.Register("r", "/obj", regOff, regSize); err != nil {
			if infer.CodeOf(err) != infer.CodeInvalidArgument {
				t.Fatalf("register: %v", err)
			}
			if regSize != 0 && regOff+regSize >= regOff && regOff+regSize <= 8192 {
				t.Fatalf("valid window refused: %v", err)
			}
			return
		}
		r, err := g.Acquire("r")
		if err != nil {
			t.Fatal(err)
		}
		defer g.Release(r)
		inside := off <= regSize && size <= regSize-off
		b, err := r.Read(off, min(size, 1<<20))
		if inside != (err == nil) && size <= 1<<20 {
			t.Fatalf("read(%d, %d) of a %d-byte window: %v", off, size, regSize, err)
		}
		if err == nil && uint64(len(b)) != min(size, 1<<20) {
			t.Fatalf("read %d bytes, want %d", len(b), size)
		}
		if err != nil && infer.CodeOf(err) != infer.CodeInvalidArgument {
			t.Fatalf("read: %v", err)
		}
	})
}

// FuzzParseRef: parsing never panics and accepts exactly the documented
// shapes.
func FuzzParseRef(f *testing.F) {
	f.Add("r", int64(64), int64(0), true, true)
	f.Add("", int64(-1), int64(-5), true, false)
	f.Fuzz(func(t *testing.T, region string, size, offset int64, hasSize, hasOffset bool) {
		var s, o any
		if hasSize {
			s = size
		}
		if hasOffset {
			o = offset
		}
		ref, ok, err := ParseRef("input 'X'", region, s, o)
		valid := region != "" && hasSize && size >= 0 && (!hasOffset || offset >= 0)
		if valid != (err == nil) {
			t.Fatalf("ParseRef(%q, %v, %v) = %v, valid %v", region, s, o, err, valid)
		}
		if err == nil && (!ok || ref.Region != region || ref.ByteSize != uint64(size)) {
			t.Fatalf("ParseRef = %+v, %v", ref, ok)
		}
	})
}
