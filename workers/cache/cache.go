// Package cache is the worker's response cache (Triton's response_cache):
// inference results kept by a hash of the request that produced them, in
// one least-recently-used cache bounded by bytes and shared by every model
// that enables caching. It is safe for concurrent use.
package cache

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"

	"github.com/helixflow/helixflow/workers/tensor"
)

// Key identifies a request: a SHA-256 over what determines its result.
type Key [sha256.Size]byte

// entryOverhead approximates the memory an entry costs besides its
// tensors' bytes (list element, map slot, key, slice headers).
const entryOverhead = 128

// tensorOverhead approximates a tensor's own cost besides data, name and shape.
const tensorOverhead = 64

// Cache is an LRU of inference results bounded by MaxBytes.
type Cache struct {
	maxBytes int64

	mu      sync.Mutex
	used    int64
	order   *list.List // front: most recently used
	entries map[Key]*list.Element
}

type entry struct {
	key     Key
	owner   uint64
	outputs []tensor.Tensor
	size    int64
}

// New returns a cache that holds at most maxBytes of results (> 0).
func New(maxBytes int64) *Cache {
	return &Cache{maxBytes: maxBytes, order: list.New(), entries: make(map[Key]*list.Element)}
}

// Get returns a copy of the result stored under k.
func (c *Cache) Get(k Key) ([]tensor.Tensor, bool) {
	c.mu.Lock()
	el, ok := c.entries[k]
	if !ok {
		c.mu.Unlock()
		return nil, false
	}
	c.order.MoveToFront(el)
	stored := el.Value.(*entry).outputs
	c.mu.Unlock()
	// Stored tensors are never modified, so copying outside the lock is
	// safe even if the entry is evicted meanwhile.
	return clone(stored), true
}

// Put stores a copy of outputs under k for owner (a loaded model version,
// see Drop), evicting the least recently used results to make room. A
// result larger than the whole cache is not stored; Put reports whether it
// was.
func (c *Cache) Put(k Key, owner uint64, outputs []tensor.Tensor) bool {
	size := Size(outputs)
	if size > c.maxBytes {
		return false
	}
	e := &entry{key: k, owner: owner, outputs: clone(outputs), size: size}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[k]; ok {
		// A concurrent miss of the same request stored it first.
		c.order.MoveToFront(el)
		return true
	}
	for c.used+size > c.maxBytes {
		c.removeLocked(c.order.Back())
	}
	c.entries[k] = c.order.PushFront(e)
	c.used += size
	return true
}

// Drop removes owner's results (its model version was unloaded: a reload
// of the same version may answer differently).
func (c *Cache) Drop(owner uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.order.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*entry).owner == owner {
			c.removeLocked(el)
		}
		el = next
	}
}

func (c *Cache) removeLocked(el *list.Element) {
	e := c.order.Remove(el).(*entry)
	delete(c.entries, e.key)
	c.used -= e.size
}

// Len is the number of results held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Bytes is the memory the held results account for.
func (c *Cache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// MaxBytes is the cache's bound.
func (c *Cache) MaxBytes() int64 { return c.maxBytes }

// Size is what a result counts against the cache's bound.
func Size(outputs []tensor.Tensor) int64 {
	n := int64(entryOverhead)
	for _, t := range outputs {
		n += tensorOverhead + int64(len(t.Name)+len(t.DataType)+8*len(t.Shape)+len(t.Data))
	}
	return n
}

func clone(ts []tensor.Tensor) []tensor.Tensor {
	out := make([]tensor.Tensor, len(ts))
	for i, t := range ts {
		out[i] = tensor.Tensor{
			Name:     t.Name,
			DataType: t.DataType,
			Shape:    append([]int64(nil), t.Shape...),
			Data:     append([]byte(nil), t.Data...),
		}
	}
	return out
}

// KeyBuilder hashes a request. Each part is length-prefixed, so that
// different requests never write the same byte stream.
type KeyBuilder struct {
	h   hash.Hash
	buf [8]byte
}

// NewKey starts the key of a request to model at version; generation tells
// loads of the same version apart.
func NewKey(model string, version int64, generation uint64) *KeyBuilder {
	b := &KeyBuilder{h: sha256.New()}
	b.str(model)
	b.u64(uint64(version))
	b.u64(generation)
	return b
}

// Input adds an input tensor: name, datatype, shape and bytes.
func (b *KeyBuilder) Input(t tensor.Tensor) {
	b.str("i")
	b.str(t.Name)
	b.str(string(t.DataType))
	b.u64(uint64(len(t.Shape)))
	for _, d := range t.Shape {
		b.u64(uint64(d))
	}
	b.u64(uint64(len(t.Data)))
	b.h.Write(t.Data)
}

// Output adds an output the request asks for and its classification
// count (0: the tensor itself).
func (b *KeyBuilder) Output(name string, classification uint64) {
	b.str("o")
	b.str(name)
	b.u64(classification)
}

// Sum returns the key.
func (b *KeyBuilder) Sum() Key {
	var k Key
	b.h.Sum(k[:0])
	return k
}

func (b *KeyBuilder) str(s string) {
	b.u64(uint64(len(s)))
	b.h.Write([]byte(s))
}

func (b *KeyBuilder) u64(v uint64) {
	binary.LittleEndian.PutUint64(b.buf[:], v)
	b.h.Write(b.buf[:])
}
