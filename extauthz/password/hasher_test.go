package password

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// Each parameter has its floor, and the refusal names the parameter (the
// flags --password-memory-kib, --password-iterations and
// --password-parallelism report it).
func TestParamsFloorNamesTheParameter(t *testing.T) {
	for _, tc := range []struct {
		p    Params
		name string
	}{
		{Params{MemoryKiB: 19*1024 - 1, Iterations: 2, Parallelism: 1}, "memory"},
		{Params{MemoryKiB: 0, Iterations: 9, Parallelism: 9}, "memory"},
		{Params{MemoryKiB: 19 * 1024, Iterations: 1, Parallelism: 1}, "iterations"},
		{Params{MemoryKiB: 19 * 1024, Iterations: 0, Parallelism: 1}, "iterations"},
		{Params{MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 0}, "parallelism"},
		{Params{MemoryKiB: 64 * 1024, Iterations: 4, Parallelism: 0}, "parallelism"},
	} {
		_, err := New(Config{Params: tc.p})
		if err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("New(%s) = %v, want a refusal naming %s", tc.p, err, tc.name)
		}
	}
	for _, tc := range []struct {
		cfg  Config
		want Params
	}{
		{Config{}, Minimum},
		{Config{Params: Params{MemoryKiB: 64 * 1024, Iterations: 3, Parallelism: 2}}, Params{MemoryKiB: 64 * 1024, Iterations: 3, Parallelism: 2}},
	} {
		h, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if h.Params() != tc.want {
			t.Errorf("New(%+v).Params() = %s, want %s", tc.cfg, h.Params(), tc.want)
		}
	}
}

// phc builds a PHC string from its parts, for hashes this package would
// not write.
func phc(params, salt, key string) string {
	return "$argon2id$v=19$" + params + "$" + salt + "$" + key
}

// A stored hash is read strictly: every malformed or out-of-bounds field is
// ErrMalformedHash, before any work is done or waited for (a hash written
// by someone with database access cannot make a login take gigabytes or
// hours): the Hasher here has no free turn, so work would be ErrBusy.
func TestMalformedPHC(t *testing.T) {
	h, release := full(t, 10*time.Millisecond)
	const (
		salt = "c2FsdHNhbHRzYWx0"                            // 12 bytes
		key  = "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g" // 32 bytes
	)
	for name, s := range map[string]string{
		"text before":          "x" + phc("m=19456,t=2,p=1", salt, key),
		"a seventh field":      phc("m=19456,t=2,p=1", salt, key) + "$x",
		"no version":           "$argon2id$m=19456,t=2,p=1$" + salt + "$" + key,
		"version 19 in words":  "$argon2id$v=nineteen$m=19456,t=2,p=1$" + salt + "$" + key,
		"argon2d":              "$argon2d$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"parameters reordered": phc("t=2,m=19456,p=1", salt, key),
		"a parameter renamed":  phc("m=19456,i=2,p=1", salt, key),
		"four parameters":      phc("m=19456,t=2,p=1,k=1", salt, key),
		"no parameters":        phc("", salt, key),
		"memory not a number":  phc("m=lots,t=2,p=1", salt, key),
		"negative memory":      phc("m=-19456,t=2,p=1", salt, key),
		"signed memory":        phc("m=+19456,t=2,p=1", salt, key),
		"memory over 32 bits":  phc("m=4294967296,t=2,p=1", salt, key),
		"memory over 4 GiB":    phc("m=4194305,t=2,p=1", salt, key),
		"memory under 8p":      phc("m=31,t=2,p=4", salt, key),
		"zero memory":          phc("m=0,t=2,p=1", salt, key),
		"65 iterations":        phc("m=19456,t=65,p=1", salt, key),
		"zero parallelism":     phc("m=19456,t=2,p=0", salt, key),
		"parallelism 65":       phc("m=19456,t=2,p=65", salt, key),
		"parallelism 256":      phc("m=19456,t=2,p=256", salt, key),
		"parallelism 257":      phc("m=19456,t=2,p=257", salt, key),
		"padded salt":          phc("m=19456,t=2,p=1", "c2FsdHNhbHQ=", key),
		"salt of 7 bytes":      phc("m=19456,t=2,p=1", "c2FsdHNhbA", key),
		"empty salt":           phc("m=19456,t=2,p=1", "", key),
		"url-safe salt":        phc("m=19456,t=2,p=1", "c2FsdHNh_-RzYWx0", key),
		"key of 15 bytes":      phc("m=19456,t=2,p=1", salt, "aGFzaGhhc2hoYXNoaGFz"),
		"key of 65 bytes":      phc("m=19456,t=2,p=1", salt, strings.Repeat("QUFB", 21)+"QUE"),
		"key not base64":       phc("m=19456,t=2,p=1", salt, strings.Repeat("*", 43)),
	} {
		ok, rehash, err := h.Verify(context.Background(), s, "password")
		if !errors.Is(err, ErrMalformedHash) || ok || rehash {
			t.Errorf("%s: Verify(%q) = %v, %v, %v; want ErrMalformedHash", name, s, ok, rehash, err)
		}
	}
	// The bounds themselves are accepted (the parameters are in range).
	release()
	ok, _, err := h.Verify(context.Background(), phc("m=256,t=1,p=32", salt, key), "password")
	if err != nil || ok {
		t.Errorf("Verify at m=8p: %v, %v; want a mismatch, no error", ok, err)
	}
}

// rawHash is a PHC string of pw under p with a key of n bytes, as another
// (older, or differently configured) writer would have stored it.
func rawHash(pw string, p Params, n uint32) string {
	salt := []byte("sixteen byte slt")
	return encode(p, salt, argon2.IDKey([]byte(pw), salt, p.Iterations, p.MemoryKiB, p.Parallelism, n))
}

// A right password under weaker parameters, or with a key of another
// length, verifies and asks for a rehash; under stronger ones it verifies
// and is kept (no downgrade). A wrong password never asks for a rehash.
func TestRehash(t *testing.T) {
	ctx := context.Background()
	h, err := New(Config{Params: Params{MemoryKiB: 19 * 1024, Iterations: 3, Parallelism: 1}})
	if err != nil {
		t.Fatal(err)
	}
	const pw = "a long enough password"
	for _, tc := range []struct {
		name       string
		stored     string
		pw         string
		ok, rehash bool
	}{
		{"same parameters", rawHash(pw, h.Params(), keyBytes), pw, true, false},
		{"fewer iterations", rawHash(pw, Params{MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 1}, keyBytes), pw, true, true},
		{"less memory (below today's floor)", rawHash(pw, Params{MemoryKiB: 4096, Iterations: 3, Parallelism: 1}, keyBytes), pw, true, true},
		{"a 16-byte key", rawHash(pw, h.Params(), 16), pw, true, true},
		{"a 64-byte key", rawHash(pw, h.Params(), 64), pw, true, true},
		{"stronger parameters", rawHash(pw, Params{MemoryKiB: 24 * 1024, Iterations: 4, Parallelism: 2}, keyBytes), pw, true, false},
		{"wrong password, weak parameters", rawHash(pw, Params{MemoryKiB: 4096, Iterations: 1, Parallelism: 1}, keyBytes), pw + "!", false, false},
		{"wrong password, short key", rawHash(pw, h.Params(), 16), "another password", false, false},
	} {
		ok, rehash, err := h.Verify(ctx, tc.stored, tc.pw)
		if err != nil || ok != tc.ok || rehash != tc.rehash {
			t.Errorf("%s: Verify = %v, %v, %v; want %v, %v, nil", tc.name, ok, rehash, err, tc.ok, tc.rehash)
		}
	}
	// The rehash carries the Hasher's parameters and verifies without
	// asking again.
	phc, err := h.Hash(ctx, pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=19456,t=3,p=1$") {
		t.Errorf("rehash %q does not carry the Hasher's parameters", phc)
	}
	if ok, rehash, err := h.Verify(ctx, phc, pw); !ok || rehash || err != nil {
		t.Errorf("Verify(rehash) = %v, %v, %v", ok, rehash, err)
	}
}

// full returns a Hasher whose one turn is taken; release gives it back.
func full(t *testing.T, wait time.Duration) (h *Hasher, release func()) {
	t.Helper()
	h, err := New(Config{MaxConcurrent: 1, QueueWait: wait})
	if err != nil {
		t.Fatal(err)
	}
	h.sem <- struct{}{}
	return h, func() { <-h.sem }
}

// Every kind of work waits for a turn the same way: a caller whose context
// ends while it waits gets the context's error at once (not ErrBusy, not
// after the queue wait); one that outwaits the limit gets ErrBusy; one
// whose turn comes in time gets its answer.
func TestQueue(t *testing.T) {
	stored := rawHash("a long enough password", Minimum, keyBytes)
	work := map[string]func(context.Context, *Hasher) error{
		"Hash": func(ctx context.Context, h *Hasher) error {
			_, err := h.Hash(ctx, "a long enough password")
			return err
		},
		"Verify": func(ctx context.Context, h *Hasher) error {
			ok, _, err := h.Verify(ctx, stored, "a long enough password")
			if err == nil && !ok {
				return errors.New("the right password did not verify")
			}
			return err
		},
		"DummyWork": func(ctx context.Context, h *Hasher) error { return h.DummyWork(ctx, "a long enough password") },
	}
	for name, do := range work {
		t.Run(name+"/cancelled while waiting", func(t *testing.T) {
			h, release := full(t, time.Minute)
			defer release()
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			start := time.Now()
			err := do(ctx, h)
			if !errors.Is(err, context.Canceled) || errors.Is(err, ErrBusy) {
				t.Fatalf("error %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("returned after %s: the cancellation was not heard", d)
			}
			if len(h.sem) != 1 {
				t.Errorf("%d turns taken, want only the one held", len(h.sem))
			}
		})
		t.Run(name+"/deadline while waiting", func(t *testing.T) {
			h, release := full(t, time.Minute)
			defer release()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if err := do(ctx, h); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %v, want context.DeadlineExceeded", err)
			}
		})
		t.Run(name+"/busy", func(t *testing.T) {
			h, release := full(t, 20*time.Millisecond)
			defer release()
			if err := do(context.Background(), h); !errors.Is(err, ErrBusy) {
				t.Fatalf("error %v, want ErrBusy", err)
			}
		})
		t.Run(name+"/turn comes in time", func(t *testing.T) {
			h, release := full(t, time.Minute)
			time.AfterFunc(20*time.Millisecond, release)
			if err := do(context.Background(), h); err != nil {
				t.Fatalf("error %v, want the work done once the turn came", err)
			}
			if len(h.sem) != 0 {
				t.Errorf("%d turns leaked", len(h.sem))
			}
		})
	}
}
