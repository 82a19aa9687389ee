package secret

import (
	"context"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/ory/fosite"
)

// fosite authenticates clients through this adapter.
var _ fosite.Hasher = FositeHasher{}

func TestNewClientSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s, err := NewClientSecret()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(raw) != 32 || strings.ContainsRune(s, '=') {
			t.Fatalf("secret %q: want 32 bytes of unpadded base64url (err %v)", s, err)
		}
		if seen[s] {
			t.Fatal("repeated secret")
		}
		seen[s] = true
	}
}

func TestNewClientID(t *testing.T) {
	re := regexp.MustCompile(`^hxc_[a-z2-7]{26}$`)
	a, err := NewClientID()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewClientID()
	if err != nil {
		t.Fatal(err)
	}
	if !re.MatchString(a) || !re.MatchString(b) || a == b {
		t.Fatalf("client ids %q, %q", a, b)
	}
}

func TestNewAPIKeyRoundTrip(t *testing.T) {
	re := regexp.MustCompile(`^hx_[a-z2-7]{8}_[A-Za-z0-9_-]{43}$`)
	prefixes := map[string]bool{}
	for range 200 {
		key, prefix, err := NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(key) || len(key) != APIKeyLen {
			t.Fatalf("key %q has the wrong shape", key)
		}
		got, ok := ParseAPIKey(key)
		if !ok || got != prefix {
			t.Fatalf("ParseAPIKey(%q) = %q, %v; want %q, true", key, got, ok, prefix)
		}
		prefixes[prefix] = true
	}
	if len(prefixes) < 195 {
		t.Fatalf("only %d distinct prefixes in 200 keys", len(prefixes))
	}
}

func TestParseAPIKeyRejects(t *testing.T) {
	key, _, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	secretPart := key[12:]
	cases := map[string]string{
		"empty":                 "",
		"tag only":              "hx_",
		"wrong tag":             "hy_" + key[3:],
		"upper-case tag":        "HX_" + key[3:],
		"upper-case prefix":     "hx_" + strings.ToUpper(key[3:11]) + key[11:],
		"prefix outside base32": "hx_abcdefg1_" + secretPart,
		"wrong separator":       "hx_abcdefghx" + secretPart,
		"short secret":          key[:len(key)-1],
		"long secret":           key + "A",
		"padded secret":         key[:len(key)-1] + "=",
		"secret with plus":      key[:20] + "+" + key[21:],
		"secret with space":     key[:20] + " " + key[21:],
		"non-zero tail bits":    key[:len(key)-1] + "B", // 'B' sets a padding bit
		"non-ascii":             "hx_abcdefgh_" + strings.Repeat("é", 21) + "a",
		"sql":                   "hx_abcdefgh_' OR 1=1 --" + strings.Repeat("a", 20),
		"client secret":         secretPart,
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			if p, ok := ParseAPIKey(s); ok {
				t.Fatalf("ParseAPIKey(%q) = %q, true; want false", s, p)
			}
		})
	}
}

func TestHasher(t *testing.T) {
	plain := NewHasher(nil)
	peppered := NewHasher([]byte("pepper-0123456789abcdef0123456789"))
	other := NewHasher([]byte("another-pepper-0123456789abcdef01"))
	s, err := NewClientSecret()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		h      *Hasher
		hash   []byte
		secret string
		want   bool
	}{
		{"plain ok", plain, plain.Hash(s), s, true},
		{"peppered ok", peppered, peppered.Hash(s), s, true},
		{"wrong secret", peppered, peppered.Hash(s), s + "x", false},
		{"other pepper", other, peppered.Hash(s), s, false},
		{"plain vs peppered", plain, peppered.Hash(s), s, false},
		{"empty secret", plain, plain.Hash(""), "", false},
		{"empty hash", plain, nil, s, false},
		{"truncated hash", plain, plain.Hash(s)[:16], s, false},
		{"zero value", &Hasher{}, plain.Hash(s), s, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.Verify(tt.hash, tt.secret); got != tt.want {
				t.Fatalf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
	if len(peppered.Hash(s)) != 32 {
		t.Fatal("hash is not 32 bytes")
	}
}

func TestNewHasherCopiesPepper(t *testing.T) {
	pepper := []byte("pepper-0123456789abcdef0123456789")
	h := NewHasher(pepper)
	want := h.Hash("x")
	pepper[0] ^= 0xff
	if !h.Verify(want, "x") {
		t.Fatal("changing the caller's slice changed the hasher")
	}
}

func TestFositeHasher(t *testing.T) {
	ctx := context.Background()
	f := NewHasher([]byte("pepper")).Fosite()
	hash, err := f.Hash(ctx, []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Compare(ctx, hash, []byte("s3cret")); err != nil {
		t.Fatalf("Compare: %v", err)
	}
	if err := f.Compare(ctx, hash, []byte("s3creT")); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Compare with a wrong secret = %v, want ErrMismatch", err)
	}
}

func FuzzParseAPIKey(f *testing.F) {
	key, _, err := NewAPIKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(key)
	f.Add("hx_abcdefgh_")
	f.Add("")
	re := regexp.MustCompile(`^hx_[a-z2-7]{8}_[A-Za-z0-9_-]{43}$`)
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := ParseAPIKey(s)
		if !ok {
			return
		}
		if !re.MatchString(s) || p != s[3:11] {
			t.Fatalf("accepted %q (prefix %q)", s, p)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	h := NewHasher([]byte("pepper-0123456789abcdef0123456789"))
	s, _ := NewClientSecret()
	hash := h.Hash(s)
	for b.Loop() {
		if !h.Verify(hash, s) {
			b.Fatal("mismatch")
		}
	}
}
