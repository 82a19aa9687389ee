package httpapi

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// inferJSON is an infer request for the fake's "simple" model with n FP32
// zeros: about 2n bytes of JSON.
func inferJSON(n int) []byte {
	return fmt.Appendf(nil, `{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,%d],"data":[%s0]}]}`,
		n, strings.Repeat("0,", n-1))
}

func compress(t *testing.T, enc string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	if enc == "gzip" {
		w = gzip.NewWriter(&buf)
	} else {
		w = zlib.NewWriter(&buf)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestCompressedBodiesHaveATighterLimit: a compressed body may decompress
// to at most MaxDecompressedBytes, below MaxRequestBytes, so that a small
// compression bomb costs little; it is refused with 413 naming the limit,
// an uncompressed body of the same size is served, and so is the next
// request.
func TestCompressedBodiesHaveATighterLimit(t *testing.T) {
	opts := Options{MaxRequestBytes: 1 << 20, MaxDecompressedBytes: 64 << 10, Logger: slog.New(slog.DiscardHandler)}
	h := NewHandler(newFakeService(), opts)
	big := inferJSON(50_000) // ~100 KB: over the compressed limit, under the other
	small := inferJSON(100)
	for _, enc := range []string{"gzip", "deflate"} {
		bomb := compress(t, enc, big)
		if len(bomb) > 4<<10 {
			t.Fatalf("%s of %d bytes is %d bytes: not a bomb", enc, len(big), len(bomb))
		}
		r := do(t, h, "POST", "/v2/models/simple/infer", bomb, map[string]string{"Content-Encoding": enc})
		if r.status != 413 || !strings.Contains(errorMessage(t, r), "65536") {
			t.Errorf("%s bomb: %d %.200s, want 413 naming the limit 65536", enc, r.status, r.body)
		}
		r = do(t, h, "POST", "/v2/models/simple/infer", compress(t, enc, small), map[string]string{"Content-Encoding": enc})
		if r.status != 200 {
			t.Errorf("%s small body after the bomb: %d %.200s", enc, r.status, r.body)
		}
	}
	if r := do(t, h, "POST", "/v2/models/simple/infer", big, nil); r.status != 200 {
		t.Errorf("uncompressed %d bytes: %d %.200s", len(big), r.status, r.body)
	}

	// By default the compressed limit is a quarter of the other.
	if got := NewHandler(newFakeService(), Options{MaxRequestBytes: 1 << 20}).(*handler).maxDecompressed; got != 256<<10 {
		t.Errorf("default MaxDecompressedBytes = %d, want %d", got, 256<<10)
	}
}

// TestUnsupportedContentEncoding: a Content-Encoding other than gzip,
// deflate or identity is 415 with Accept-Encoding listing those Triton
// reads, as Triton's HandleInfer answers (schemathesis found 501, a server
// error, for a client's mistake).
func TestUnsupportedContentEncoding(t *testing.T) {
	for _, enc := range []string{"br", "zstd", "{}", "gzip, br"} {
		t.Run(enc, func(t *testing.T) {
			r := do(t, NewHandler(newFakeService(), quiet), "POST", "/v2/models/simple/infer", []byte(`{"inputs":[]}`),
				map[string]string{"Content-Encoding": enc})
			if r.status != http.StatusUnsupportedMediaType {
				t.Fatalf("status %d (%s), want 415", r.status, r.body)
			}
			if got := r.header.Get("Accept-Encoding"); got != "gzip, deflate" {
				t.Errorf("Accept-Encoding %q, want \"gzip, deflate\"", got)
			}
			if msg := errorMessage(t, r); !strings.Contains(msg, "Unsupported compression type") {
				t.Errorf("message %q", msg)
			}
		})
	}
}
