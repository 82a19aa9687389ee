// Package password hashes and checks people's passwords: argon2id in PHC
// string form, each hash carrying its parameters so they can be raised
// (Verify says when a hash needs redoing), and NIST SP 800-63B's rules for
// choosing one (Policy).
//
// Hashing is CPU- and memory-heavy by design (19 MiB and tens of
// milliseconds each at OWASP's minimum): a Hasher bounds how many run at
// once, and a caller that waits too long for its turn gets ErrBusy (the
// API answers 503) instead of queueing without end, so a flood of logins
// cannot take memory × callers.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

//go:generate ./gencommon.sh

// Params are argon2id's cost parameters.
type Params struct {
	MemoryKiB   uint32
	Iterations  uint32
	Parallelism uint8
}

// Minimum is OWASP's minimum for argon2id (m=19 MiB, t=2, p=1): the
// default, and the floor New accepts.
var Minimum = Params{MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 1}

func (p Params) String() string {
	return fmt.Sprintf("m=%d,t=%d,p=%d", p.MemoryKiB, p.Iterations, p.Parallelism)
}

// Validate refuses parameters below Minimum, naming the one.
func (p Params) Validate() error {
	switch {
	case p.MemoryKiB < Minimum.MemoryKiB:
		return fmt.Errorf("password: memory %d KiB is below the minimum %d KiB", p.MemoryKiB, Minimum.MemoryKiB)
	case p.Iterations < Minimum.Iterations:
		return fmt.Errorf("password: %d iterations are below the minimum %d", p.Iterations, Minimum.Iterations)
	case p.Parallelism < Minimum.Parallelism:
		return fmt.Errorf("password: parallelism %d is below the minimum %d", p.Parallelism, Minimum.Parallelism)
	}
	return nil
}

const (
	saltBytes = 16
	keyBytes  = 32
	// DefaultQueueWait: how long a hash waits for its turn before ErrBusy.
	DefaultQueueWait = 2 * time.Second
)

// Errors callers act on.
var (
	// ErrBusy: too many hashes are running; try again shortly (503).
	ErrBusy = errors.New("password: too many password checks in progress")
	// ErrMalformedHash: a stored hash that is not argon2id PHC.
	ErrMalformedHash = errors.New("password: malformed hash")
)

// Config configures a Hasher.
type Config struct {
	// Params for new hashes (zero: Minimum); below Minimum is refused.
	Params Params
	// MaxConcurrent hashes at once (default GOMAXPROCS).
	MaxConcurrent int
	// QueueWait bounds the wait for a turn (default DefaultQueueWait).
	QueueWait time.Duration
}

// Hasher hashes and verifies passwords, a bounded number at a time.
type Hasher struct {
	params Params
	// sem holds a token per running hash: a buffered channel is the whole
	// semaphore, with select giving the wait limit and the context.
	sem  chan struct{}
	wait time.Duration
}

// New returns a Hasher.
func New(cfg Config) (*Hasher, error) {
	if cfg.Params == (Params{}) {
		cfg.Params = Minimum
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = runtime.GOMAXPROCS(0)
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = DefaultQueueWait
	}
	return &Hasher{params: cfg.Params, sem: make(chan struct{}, cfg.MaxConcurrent), wait: cfg.QueueWait}, nil
}

// Params are the parameters of new hashes.
func (h *Hasher) Params() Params { return h.params }

func (h *Hasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-t.C:
		return ErrBusy
	case <-ctx.Done():
		return fmt.Errorf("password: %w", ctx.Err())
	}
}

func (h *Hasher) release() { <-h.sem }

// Hash returns the PHC string of pw (NFC-normalised) under the Hasher's
// parameters.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	salt := make([]byte, saltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: random: %w", err)
	}
	key, err := h.derive(ctx, pw, salt, h.params, keyBytes)
	if err != nil {
		return "", err
	}
	return encode(h.params, salt, key), nil
}

// Verify says whether pw matches the PHC string phc, and whether phc
// should be replaced by a new Hash of pw (its parameters are below the
// Hasher's). needsRehash is meaningful only when ok.
func (h *Hasher) Verify(ctx context.Context, phc, pw string) (ok, needsRehash bool, err error) {
	p, salt, want, err := decode(phc)
	if err != nil {
		return false, false, err
	}
	got, err := h.derive(ctx, pw, salt, p, uint32(len(want)))
	if err != nil {
		return false, false, err
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return false, false, nil
	}
	return true, p.MemoryKiB < h.params.MemoryKiB || p.Iterations < h.params.Iterations ||
		p.Parallelism < h.params.Parallelism || len(want) != keyBytes, nil
}

// DummyWork does the work of one Verify and throws it away: the branch of
// a request that has no user to check spends the same time as the one that
// has (account enumeration by timing).
func (h *Hasher) DummyWork(ctx context.Context, pw string) error {
	_, err := h.derive(ctx, pw, make([]byte, saltBytes), h.params, keyBytes)
	return err
}

func (h *Hasher) derive(ctx context.Context, pw string, salt []byte, p Params, n uint32) ([]byte, error) {
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	defer h.release()
	return argon2.IDKey([]byte(norm.NFC.String(pw)), salt, p.Iterations, p.MemoryKiB, p.Parallelism, n), nil
}

var b64 = base64.RawStdEncoding

func encode(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$%s$%s$%s", argon2.Version, p, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// maxParams bounds what a stored hash may ask for, so a hash written by
// someone with database access cannot make a login take gigabytes.
var maxParams = Params{MemoryKiB: 4 << 20, Iterations: 64, Parallelism: 64}

// decode parses "$argon2id$v=19$m=..,t=..,p=..$salt$hash".
func decode(phc string) (Params, []byte, []byte, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return Params{}, nil, nil, ErrMalformedHash
	}
	var p Params
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return Params{}, nil, nil, ErrMalformedHash
	}
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(fields[i], name)
		if !ok {
			return Params{}, nil, nil, ErrMalformedHash
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return Params{}, nil, nil, ErrMalformedHash
		}
		switch i {
		case 0:
			p.MemoryKiB = uint32(n)
		case 1:
			p.Iterations = uint32(n)
		case 2:
			if n > 255 {
				return Params{}, nil, nil, ErrMalformedHash
			}
			p.Parallelism = uint8(n)
		}
	}
	if p.MemoryKiB > maxParams.MemoryKiB || p.Iterations > maxParams.Iterations || p.Parallelism > maxParams.Parallelism ||
		p.MemoryKiB < 8*uint32(p.Parallelism) {
		return Params{}, nil, nil, ErrMalformedHash
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return Params{}, nil, nil, ErrMalformedHash
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return Params{}, nil, nil, ErrMalformedHash
	}
	return p, salt, key, nil
}
