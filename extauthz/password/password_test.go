package password

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHashVerify(t *testing.T) {
	ctx := context.Background()
	h, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	phc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q does not carry the minimum parameters", phc)
	}
	other, _ := h.Hash(ctx, "correct horse battery staple")
	if other == phc {
		t.Error("two hashes of one password are equal: no salt")
	}
	for _, tc := range []struct {
		pw string
		ok bool
	}{
		{"correct horse battery staple", true},
		{"correct horse battery staplE", false},
		{"", false},
	} {
		ok, rehash, err := h.Verify(ctx, phc, tc.pw)
		if err != nil || ok != tc.ok || rehash {
			t.Errorf("Verify(%q) = %v, %v, %v; want %v, false, nil", tc.pw, ok, rehash, err, tc.ok)
		}
	}
	// NFC: a precomposed and a combining "é" are one password.
	phc, _ = h.Hash(ctx, "caf\u00e9 au lait!")
	if ok, _, _ := h.Verify(ctx, phc, "cafe\u0301 au lait!"); !ok {
		t.Error("the decomposed form of a password does not verify")
	}
}

func TestNeedsRehash(t *testing.T) {
	ctx := context.Background()
	low, _ := New(Config{})
	phc, _ := low.Hash(ctx, "a long enough password")
	for _, p := range []Params{
		{MemoryKiB: 32 * 1024, Iterations: 2, Parallelism: 1},
		{MemoryKiB: 19 * 1024, Iterations: 3, Parallelism: 1},
		{MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 2},
	} {
		high, err := New(Config{Params: p})
		if err != nil {
			t.Fatal(err)
		}
		ok, rehash, err := high.Verify(ctx, phc, "a long enough password")
		if err != nil || !ok || !rehash {
			t.Errorf("%s: Verify = %v, %v, %v; want a match that needs a rehash", p, ok, rehash, err)
		}
	}
}

func TestParamsFloor(t *testing.T) {
	for _, p := range []Params{
		{MemoryKiB: 19*1024 - 1, Iterations: 2, Parallelism: 1},
		{MemoryKiB: 19 * 1024, Iterations: 1, Parallelism: 1},
		{MemoryKiB: 64 * 1024, Iterations: 1, Parallelism: 4},
	} {
		if _, err := New(Config{Params: p}); err == nil {
			t.Errorf("%s below the minimum was accepted", p)
		}
	}
}

func TestMalformedHashes(t *testing.T) {
	h, _ := New(Config{})
	for _, phc := range []string{
		"",
		"plaintext",
		"$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=19456,t=0,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=19456,t=2$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=19456,t=2,p=1$!!$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaA",
	} {
		if _, _, err := h.Verify(context.Background(), phc, "password"); !errors.Is(err, ErrMalformedHash) {
			t.Errorf("Verify(%q): %v, want ErrMalformedHash", phc, err)
		}
	}
}

func TestBusy(t *testing.T) {
	h, _ := New(Config{MaxConcurrent: 1, QueueWait: 10 * time.Millisecond})
	h.sem <- struct{}{} // one hash in progress
	start := time.Now()
	if _, err := h.Hash(context.Background(), "whatever password"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Hash while full: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("ErrBusy after %s; the wait limit is 10ms", d)
	}
	<-h.sem
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := h.Hash(context.Background(), "whatever password"); err != nil && !errors.Is(err, ErrBusy) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(h.sem) != 0 {
		t.Errorf("%d turns leaked", len(h.sem))
	}
}

func TestCheck(t *testing.T) {
	if n := CommonCount(); n < 10000 {
		t.Fatalf("%d common passwords embedded, want at least 10,000", n)
	}
	for _, tc := range []struct {
		pw, email string
		ok        bool
		why       string
	}{
		{"correct horse battery staple", "a@example.test", true, ""},
		{"Zq8!vR2#", "", true, ""},
		{"short", "", false, "at least 8"},
		{"sevennn", "", false, "at least 8"},
		{"caff\u00e9\u00e9\u00e9\u00e9", "", true, ""},                     // 8 runes, 12 bytes
		{"caffe\u0301\u00e9\u00e9\u00e9", "", true, ""},                    // 9 runes, NFC 8
		{"e\u0301e\u0301e\u0301e\u0301", "", false, "at least 8"},          // 8 runes, NFC 4
		{strings.Repeat("x", 64) + "", "", true, ""},                       // no composition rules
		{strings.Repeat("é", 65), "", false, "at most 64"},                 //
		{"password", "", false, "common"},                                  //
		{"PassWord1", "", false, "common"},                                 // case-folded
		{"iloveyou", "", false, "common"},                                  //
		{"Jane.Doe@Example.test", "jane.doe@example.test", false, "email"}, //
		{"jane.doe.x", "jane.doe.x@example.test", false, "email"},          // the local part
		{"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", "", false, "UTF-8"},           //
	} {
		err := Check(tc.pw, tc.email)
		if tc.ok != (err == nil) {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.pw, err, tc.ok)
			continue
		}
		if err != nil && (!errors.Is(err, ErrRule) || !strings.Contains(err.Error(), tc.why)) {
			t.Errorf("Check(%q) = %v, want ErrRule naming %q", tc.pw, err, tc.why)
		}
	}
}

// BenchmarkHash is one hash at the production parameters (OWASP's minimum).
func BenchmarkHash(b *testing.B) {
	h, _ := New(Config{})
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is one login's password check.
func BenchmarkVerify(b *testing.B) {
	h, _ := New(Config{})
	ctx := context.Background()
	phc, _ := h.Hash(ctx, "correct horse battery staple")
	for b.Loop() {
		if ok, _, err := h.Verify(ctx, phc, "correct horse battery staple"); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
