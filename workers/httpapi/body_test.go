package httpapi

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
)

func TestReadAll(t *testing.T) {
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i)
	}
	tests := []struct {
		name     string
		r        io.Reader
		hint     int64
		limit    int64
		want     []byte
		tooLarge bool
	}{
		{"exact hint", bytes.NewReader(data), int64(len(data)), 1 << 20, data, false},
		{"no hint", bytes.NewReader(data), -1, 1 << 20, data, false},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data[:5000])), 5000, 1 << 20, data[:5000], false},
		{"hint too small", bytes.NewReader(data), 10, 1 << 20, data, false},
		{"hint too large", bytes.NewReader(data[:10]), 1 << 19, 1 << 20, data[:10], false},
		{"empty", bytes.NewReader(nil), 0, 1 << 20, []byte{}, false},
		{"at limit", bytes.NewReader(data[:1000]), -1, 1000, data[:1000], false},
		{"over limit", bytes.NewReader(data[:1001]), -1, 1000, nil, true},
		{"over limit with exact hint", bytes.NewReader(data[:1001]), 1000, 1000, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(tt.r, tt.hint, tt.limit)
			if tt.tooLarge {
				if !errors.Is(err, errBodyTooLarge) {
					t.Fatalf("error %v, want errBodyTooLarge", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("read %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}

func TestReadAllDoesNotTrustTheHint(t *testing.T) {
	// A client announcing 64 MiB and sending nothing must not cost 64 MiB.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readAll(iotest.ErrReader(io.ErrUnexpectedEOF), 64<<20, 64<<20)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("no error from a failing reader")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("readAll allocated %d bytes for an empty body announced as 64 MiB", n)
	}
}

func TestResponseEncoding(t *testing.T) {
	tests := map[string]string{
		"gzip":                         "gzip",
		"deflate":                      "deflate",
		"gzip, deflate":                "gzip",
		"deflate, gzip":                "deflate",
		"deflate;q=0.5, gzip;q=0.8":    "gzip",
		"gzip;q=0, identity":           "identity",
		"br":                           "identity",
		"br, deflate;q=0.1":            "deflate",
		"gzip;q=abc, deflate":          "deflate",
		"*":                            "identity",
		" gzip;q=1.0 ,deflate;q=0.9  ": "gzip",
	}
	for in, want := range tests {
		if got := responseEncoding(in); got != want {
			t.Errorf("responseEncoding(%q) = %q, want %q", in, got, want)
		}
	}
}
