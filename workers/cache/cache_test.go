package cache

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/helixflow/helixflow/workers/tensor"
)

func result(name string, n int) []tensor.Tensor {
	return []tensor.Tensor{{Name: name, DataType: tensor.Uint8, Shape: []int64{int64(n)}, Data: bytes.Repeat([]byte{1}, n)}}
}

func key(s string) Key {
	b := NewKey("m", 1, 0)
	b.Output(s, 0)
	return b.Sum()
}

func TestGetPutCopies(t *testing.T) {
	c := New(1 << 20)
	out := result("OUT", 4)
	if !c.Put(key("a"), 1, out) {
		t.Fatal("not stored")
	}
	out[0].Data[0] = 9 // the caller's slice is not the stored one
	got, ok := c.Get(key("a"))
	if !ok || got[0].Data[0] != 1 || got[0].Name != "OUT" || got[0].Shape[0] != 4 {
		t.Fatalf("Get = %v, %v", got, ok)
	}
	got[0].Data[0] = 7 // nor is the returned one
	if again, _ := c.Get(key("a")); again[0].Data[0] != 1 {
		t.Fatal("Get returned the stored bytes")
	}
	if _, ok := c.Get(key("b")); ok {
		t.Fatal("hit for a key never stored")
	}
}

func TestLRUBoundedByBytes(t *testing.T) {
	one := Size(result("OUT", 100))
	c := New(3 * one)
	for _, k := range []string{"a", "b", "c"} {
		c.Put(key(k), 1, result("OUT", 100))
	}
	c.Get(key("a")) // a is now the most recently used; b the least
	c.Put(key("d"), 1, result("OUT", 100))
	if _, ok := c.Get(key("b")); ok {
		t.Fatal("b should have been evicted")
	}
	for _, k := range []string{"a", "c", "d"} {
		if _, ok := c.Get(key(k)); !ok {
			t.Fatalf("%s evicted", k)
		}
	}
	if c.Bytes() > c.MaxBytes() || c.Len() != 3 {
		t.Fatalf("bytes %d of %d, len %d", c.Bytes(), c.MaxBytes(), c.Len())
	}
	// A bigger result evicts as many as it needs, least recent first
	// (the loop above used a, c, d in this order).
	c.Put(key("big"), 1, result("OUT", 250))
	if _, ok := c.Get(key("d")); !ok || c.Len() != 2 || c.Bytes() > c.MaxBytes() {
		t.Fatalf("after a big put: len %d, bytes %d", c.Len(), c.Bytes())
	}
	// One larger than the whole cache is not stored and evicts nothing.
	if c.Put(key("huge"), 1, result("OUT", int(4*one))) {
		t.Fatal("stored a result larger than the cache")
	}
	if _, ok := c.Get(key("big")); !ok {
		t.Fatal("a refused put evicted an entry")
	}
}

func TestDrop(t *testing.T) {
	c := New(1 << 20)
	c.Put(key("a"), 1, result("OUT", 1))
	c.Put(key("b"), 2, result("OUT", 1))
	c.Drop(1)
	if _, ok := c.Get(key("a")); ok {
		t.Fatal("owner 1's entry survived Drop")
	}
	if _, ok := c.Get(key("b")); !ok || c.Len() != 1 || c.Bytes() != Size(result("OUT", 1)) {
		t.Fatal("Drop removed another owner's entry")
	}
}

func TestKeysDiffer(t *testing.T) {
	in := tensor.Tensor{Name: "IN", DataType: tensor.Int32, Shape: []int64{1, 2}, Data: []byte{1, 0, 0, 0, 2, 0, 0, 0}}
	build := func(f func(b *KeyBuilder, in tensor.Tensor) *KeyBuilder) Key {
		return f(NewKey("m", 1, 0), in).Sum()
	}
	base := func(b *KeyBuilder, in tensor.Tensor) *KeyBuilder { b.Input(in); b.Output("OUT", 0); return b }
	variants := map[string]Key{
		"base":  build(base),
		"model": func() Key { b := NewKey("n", 1, 0); b.Input(in); b.Output("OUT", 0); return b.Sum() }(),
		"ver":   func() Key { b := NewKey("m", 2, 0); b.Input(in); b.Output("OUT", 0); return b.Sum() }(),
		"gen":   func() Key { b := NewKey("m", 1, 1); b.Input(in); b.Output("OUT", 0); return b.Sum() }(),
		"name": build(func(b *KeyBuilder, in tensor.Tensor) *KeyBuilder {
			in.Name = "IN2"
			return base(b, in)
		}),
		"type": build(func(b *KeyBuilder, in tensor.Tensor) *KeyBuilder {
			in.DataType = tensor.FP32
			return base(b, in)
		}),
		"shape": build(func(b *KeyBuilder, in tensor.Tensor) *KeyBuilder {
			in.Shape = []int64{2, 1}
			return base(b, in)
		}),
		"data": build(func(b *KeyBuilder, in tensor.Tensor) *KeyBuilder {
			in.Data = []byte{1, 0, 0, 0, 3, 0, 0, 0}
			return base(b, in)
		}),
		"class": build(func(b *KeyBuilder, in tensor.Tensor) *KeyBuilder { b.Input(in); b.Output("OUT", 2); return b }),
		"outs":  build(func(b *KeyBuilder, in tensor.Tensor) *KeyBuilder { b.Input(in); b.Output("OUT2", 0); return b }),
	}
	seen := map[Key]string{}
	for name, k := range variants {
		if other, ok := seen[k]; ok {
			t.Fatalf("%s and %s have the same key", name, other)
		}
		seen[k] = name
	}
	if build(base) != variants["base"] {
		t.Fatal("the same request hashed differently")
	}
}

func TestConcurrent(t *testing.T) {
	c := New(20 * Size(result("OUT", 8)))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				k := key(fmt.Sprint((g + i) % 40))
				if _, ok := c.Get(k); !ok {
					c.Put(k, uint64(i%3), result("OUT", 8))
				}
				if i%100 == 0 {
					c.Drop(uint64(g % 3))
				}
			}
		}()
	}
	wg.Wait()
	if c.Bytes() > c.MaxBytes() {
		t.Fatalf("bytes %d over %d", c.Bytes(), c.MaxBytes())
	}
}
