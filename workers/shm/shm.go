// Package shm is the worker's registry of client system shared-memory
// regions (Triton's system shared memory extension). A client on the
// worker's host creates a POSIX shared-memory object (shm_open, so a file
// under /dev/shm), registers a window of it under a name, and then names
// that region, an offset and a byte size in place of a tensor's data: the
// worker reads inputs from the window and writes outputs into it.
//
// Every access is bounds-checked against the registered window and names
// the region, offset and size when it is out of range. A region stays
// mapped while a request uses it, even when it is unregistered meanwhile,
// and reads and writes survive a client that shrinks the file under the
// mapping (the fault becomes an error instead of a crash).
package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/helixflow/helixflow/workers/infer"
)

// DefaultDir is where shm_open keeps its objects on Linux.
const DefaultDir = "/dev/shm"

// DefaultMaxRegions bounds how many regions may be registered at once, so
// a client cannot exhaust the worker's file descriptors or address space.
const DefaultMaxRegions = 256

// MaxNameLength bounds a region name (it is echoed in errors and status).
const MaxNameLength = 256

// Options configures a Registry.
type Options struct {
	// Dir holds the shared-memory objects; "" means DefaultDir. Tests point
	// it at a temporary folder.
	Dir string
	// MaxRegions bounds the registered regions; 0 means DefaultMaxRegions.
	MaxRegions int
}

// Registry holds the registered regions. It is safe for concurrent use.
type Registry struct {
	dir string
	max int

	mu      sync.Mutex
	regions map[string]*Region
}

// New returns an empty registry.
func New(opts Options) *Registry {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	if opts.MaxRegions <= 0 {
		opts.MaxRegions = DefaultMaxRegions
	}
	return &Registry{dir: opts.Dir, max: opts.MaxRegions, regions: make(map[string]*Region)}
}

// Status describes one registered region, as Triton's status lists it.
type Status struct {
	Name     string
	Key      string
	Offset   uint64
	ByteSize uint64
}

// Region is one registered window of a shared-memory object. Use it only
// between Registry.Acquire and Release.
type Region struct {
	status  Status
	mapping []byte // what mmap returned (from a page boundary)
	data    []byte // the registered window inside mapping

	// Guarded by Registry.mu.
	refs    int
	removed bool
}

// Name is the region's registered name.
func (r *Region) Name() string { return r.status.Name }

// Size is the region's byte size.
func (r *Region) Size() uint64 { return r.status.ByteSize }

// CheckKey checks that key names a shared-memory object the way shm_open
// accepts it: one path element, optionally after a leading '/', so that a
// client cannot make the worker map arbitrary files. It returns the file
// name under the registry's folder.
func CheckKey(key string) (string, error) {
	name := strings.TrimPrefix(key, "/")
	switch {
	case name == "":
		return "", infer.Errorf(infer.CodeInvalidArgument, "shared memory key '%s' is empty; use the key given to shm_open, such as '/input_data'", key)
	case strings.ContainsRune(name, '/'):
		return "", infer.Errorf(infer.CodeInvalidArgument, "shared memory key '%s' must be a single name (one optional leading '/', no other '/'), as shm_open takes it", key)
	case name == "." || name == "..":
		return "", infer.Errorf(infer.CodeInvalidArgument, "shared memory key '%s' is not a valid shm_open name", key)
	case strings.ContainsRune(name, 0):
		return "", infer.Errorf(infer.CodeInvalidArgument, "shared memory key must not contain a NUL byte")
	case len(name) > 255:
		return "", infer.Errorf(infer.CodeInvalidArgument, "shared memory key is %d bytes long; at most 255 are allowed", len(name))
	}
	return name, nil
}

// checkName checks a region name.
func checkName(name string) error {
	switch {
	case name == "":
		return infer.Errorf(infer.CodeInvalidArgument, "shared memory region name is empty")
	case len(name) > MaxNameLength:
		return infer.Errorf(infer.CodeInvalidArgument, "shared memory region name is %d bytes long; at most %d are allowed", len(name), MaxNameLength)
	}
	return nil
}

// Register maps byteSize bytes of the object key, from offset, under
// name. It refuses a name already registered (Triton's ALREADY_EXISTS), a
// key that is not a single name, an object that does not exist or is
// smaller than offset+byteSize, and more than the registry's bound.
func (g *Registry) Register(name, key string, offset, byteSize uint64) error {
	if err := checkName(name); err != nil {
		return err
	}
	file, err := CheckKey(key)
	if err != nil {
		return err
	}
	if byteSize == 0 {
		return infer.Errorf(infer.CodeInvalidArgument, "shared memory region '%s': byte_size must be greater than 0", name)
	}
	end := offset + byteSize
	if end < offset || end > maxMapping {
		return infer.Errorf(infer.CodeInvalidArgument, "shared memory region '%s': offset %d + byte_size %d is too large", name, offset, byteSize)
	}

	// Refuse duplicates before touching the file; checked again under the
	// lock below, since mapping happens outside it.
	g.mu.Lock()
	_, dup := g.regions[name]
	g.mu.Unlock()
	if dup {
		return errAlreadyExists(name)
	}

	mapping, data, err := mapObject(filepath.Join(g.dir, file), key, name, offset, byteSize)
	if err != nil {
		return err
	}
	r := &Region{status: Status{Name: name, Key: key, Offset: offset, ByteSize: byteSize}, mapping: mapping, data: data}

	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.regions[name]; dup {
		_ = syscall.Munmap(mapping)
		return errAlreadyExists(name)
	}
	if len(g.regions) >= g.max {
		_ = syscall.Munmap(mapping)
		return infer.Errorf(infer.CodeResourceExhausted,
			"cannot register shared memory region '%s': %d regions are registered, the most this worker allows; unregister some first", name, len(g.regions))
	}
	g.regions[name] = r
	return nil
}

func errAlreadyExists(name string) error {
	return infer.Errorf(infer.CodeAlreadyExists, "shared memory region '%s' already in manager", name)
}

// maxMapping bounds offset+byte_size so that every size fits an int.
const maxMapping = 1<<62 - 1

// mapObject opens path read/write and maps [offset, offset+size) of it.
func mapObject(path, key, name string, offset, size uint64) (mapping, data []byte, err error) {
	// O_NOFOLLOW: the key is one name, and a symlink under /dev/shm must
	// not lead the worker to map some other file.
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, nil, infer.Errorf(infer.CodeInvalidArgument,
				"Unable to open shared memory region '%s': no shared memory object with key '%s' exists on the worker's host", name, key)
		case errors.Is(err, os.ErrPermission):
			return nil, nil, infer.Errorf(infer.CodeInvalidArgument,
				"Unable to open shared memory region '%s': the worker may not read and write the object with key '%s'", name, key)
		}
		return nil, nil, infer.Errorf(infer.CodeInvalidArgument, "Unable to open shared memory region '%s' (key '%s'): %v", name, key, unwrapPath(err))
	}
	defer f.Close() // the mapping outlives the descriptor
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, infer.Errorf(infer.CodeInternal, "shared memory region '%s': %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, infer.Errorf(infer.CodeInvalidArgument, "shared memory key '%s' is not a shared memory object", key)
	}
	if uint64(fi.Size()) < offset+size {
		return nil, nil, infer.Errorf(infer.CodeInvalidArgument,
			"shared memory region '%s': the object with key '%s' holds %d bytes, fewer than offset %d + byte_size %d = %d",
			name, key, fi.Size(), offset, size, offset+size)
	}
	page := uint64(os.Getpagesize())
	start := offset &^ (page - 1) // mmap offsets must be page aligned
	delta := offset - start
	mapping, err = syscall.Mmap(int(f.Fd()), int64(start), int(delta+size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, infer.Errorf(infer.CodeInternal, "mapping shared memory region '%s' (key '%s'): %w", name, key, err)
	}
	return mapping, mapping[delta : delta+size : delta+size], nil
}

// unwrapPath drops the path from an *os.PathError: clients name keys,
// not worker paths.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Unregister removes the region name, or every region when name is "". A
// name that is not registered is not an error, as in Triton. A region in
// use stays mapped until its last user releases it.
func (g *Registry) Unregister(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if name != "" {
		if r, ok := g.regions[name]; ok {
			delete(g.regions, name)
			g.removeLocked(r)
		}
		return
	}
	for n, r := range g.regions {
		delete(g.regions, n)
		g.removeLocked(r)
	}
}

func (g *Registry) removeLocked(r *Region) {
	r.removed = true
	if r.refs == 0 {
		r.unmap()
	}
}

func (r *Region) unmap() {
	if r.mapping != nil {
		_ = syscall.Munmap(r.mapping)
		r.mapping, r.data = nil, nil
	}
}

// Close unregisters every region.
func (g *Registry) Close() { g.Unregister("") }

// Status lists the region name, or all regions sorted by name when name is
// "". An unknown name is NOT_FOUND with Triton's message.
func (g *Registry) Status(name string) ([]Status, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if name != "" {
		r, ok := g.regions[name]
		if !ok {
			return nil, infer.Errorf(infer.CodeNotFound, "Unable to find system shared memory region: '%s'", name)
		}
		return []Status{r.status}, nil
	}
	out := make([]Status, 0, len(g.regions))
	for _, r := range g.regions {
		out = append(out, r.status)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Acquire returns the region name for use until Release; it stays mapped
// until then even if it is unregistered.
func (g *Registry) Acquire(name string) (*Region, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.regions[name]
	if !ok {
		return nil, infer.Errorf(infer.CodeInvalidArgument, "Unable to find shared memory region: '%s'; register it first", name)
	}
	r.refs++
	return r, nil
}

// Release ends a use of r begun by Acquire.
func (g *Registry) Release(r *Region) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r.refs--
	if r.refs == 0 && r.removed {
		r.unmap()
	}
}

// Check reports whether [offset, offset+size) lies inside r, naming the
// region and the numbers when it does not.
func (r *Region) Check(offset, size uint64) error {
	if offset > r.status.ByteSize {
		return infer.Errorf(infer.CodeInvalidArgument,
			"Invalid offset for shared memory region: '%s': offset %d is past the region's end (it holds %d bytes)", r.status.Name, offset, r.status.ByteSize)
	}
	if size > r.status.ByteSize-offset {
		return infer.Errorf(infer.CodeInvalidArgument,
			"Invalid offset + byte size for shared memory region: '%s': offset %d + byte_size %d is past the region's end (it holds %d bytes)",
			r.status.Name, offset, size, r.status.ByteSize)
	}
	return nil
}

// Read copies size bytes at offset out of r. The copy keeps the request
// independent of the client, which may reuse the region at once.
func (r *Region) Read(offset, size uint64) ([]byte, error) {
	if err := r.Check(offset, size); err != nil {
		return nil, err
	}
	b := make([]byte, size)
	if err := guard(r, "read", func() { copy(b, r.data[offset:offset+size]) }); err != nil {
		return nil, err
	}
	return b, nil
}

// Write copies data into r at offset.
func (r *Region) Write(offset uint64, data []byte) error {
	if err := r.Check(offset, uint64(len(data))); err != nil {
		return err
	}
	return guard(r, "written", func() { copy(r.data[offset:], data) })
}

// guard runs f, turning a memory fault (the client truncated the object
// under the mapping: SIGBUS) into an error instead of a crash.
func guard(r *Region, what string, f func()) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if p := recover(); p != nil {
			err = infer.Errorf(infer.CodeInvalidArgument,
				"shared memory region '%s' could not be %s: the object with key '%s' is smaller than when it was registered (%v)",
				r.status.Name, what, r.status.Key, p)
		}
	}()
	f()
	return nil
}

// String describes a region for logs.
func (s Status) String() string {
	return fmt.Sprintf("%s (key %s, offset %d, %d bytes)", s.Name, s.Key, s.Offset, s.ByteSize)
}
