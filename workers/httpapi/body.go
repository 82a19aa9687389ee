package httpapi

import (
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/helixflow/helixflow/workers/infer"
)

// errBodyTooLarge marks a request body over Options.MaxRequestBytes; it is
// answered with 413.
var errBodyTooLarge = errors.New("request body too large")

// errUnsupportedEncoding marks a Content-Encoding other than gzip, deflate
// or identity; it is answered with 415, as Triton does.
var errUnsupportedEncoding = errors.New("unsupported content encoding")

// readBody reads the whole request body, decompressing it when
// Content-Encoding says gzip or deflate (zlib, as tritonclient sends it).
// The body on the wire is capped at h.maxBytes, a decompressed body at
// h.maxDecompressed: a compression bomb is refused (413) after at most
// that much work, and the handler goes on serving.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := h.maxBytes
	if r.ContentLength > limit {
		return nil, tooLarge(limit, "")
	}
	wire := http.MaxBytesReader(w, r.Body, limit)
	var src io.Reader = wire
	sizeHint := r.ContentLength
	compressed := ""
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(wire)
		if err != nil {
			return nil, decompressError(err)
		}
		src, sizeHint, limit, compressed = zr, -1, h.maxDecompressed, enc
	case "deflate":
		zr, err := zlib.NewReader(wire)
		if err != nil {
			return nil, decompressError(err)
		}
		src, sizeHint, limit, compressed = zr, -1, h.maxDecompressed, enc
	default:
		// Triton answers 415 and lists what it accepts (HandleInfer's
		// DataCompressor::Type::UNKNOWN; RFC 9110 15.5.16).
		w.Header().Set("Accept-Encoding", "gzip, deflate")
		return nil, &infer.Error{Code: infer.CodeInvalidArgument,
			Msg: fmt.Sprintf("Unsupported compression type '%s'", enc), Err: errUnsupportedEncoding}
	}
	body, err := readAll(src, sizeHint, limit)
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return nil, tooLarge(h.maxBytes, "")
	case errors.Is(err, errBodyTooLarge):
		return nil, tooLarge(limit, compressed)
	case err != nil && src != wire:
		return nil, decompressError(err)
	case err != nil:
		return nil, invalidArg("unable to read the request body: %v", err)
	}
	return body, nil
}

// tooLarge names the limit a body passed; compressed is its
// Content-Encoding when the limit was the one on decompressed bodies.
func tooLarge(limit int64, compressed string) error {
	msg := "request body exceeds the maximum allowed size of " + strconv.FormatInt(limit, 10) + " bytes"
	if compressed != "" {
		msg = "decompressed request body (Content-Encoding " + compressed + ") exceeds the maximum allowed size of " +
			strconv.FormatInt(limit, 10) + " bytes for a compressed body"
	}
	return &infer.Error{Code: infer.CodeInvalidArgument, Msg: msg, Err: errBodyTooLarge}
}

func decompressError(err error) error {
	return invalidArg("unable to decompress the request body: %v", err)
}

// readAll reads r to the end. The buffer grows as data actually arrives,
// never from a size the client merely announced: sizeHint (Content-Length)
// only caps a growth step so that an exact-size body needs no final copy,
// and at most 3x what was received is allocated ahead of the data.
func readAll(r io.Reader, sizeHint, limit int64) ([]byte, error) {
	const firstChunk = 64 << 10
	initial := int64(firstChunk)
	if sizeHint >= 0 {
		initial = min(sizeHint, firstChunk)
	}
	buf := make([]byte, 0, max(initial, 512))
	for {
		if len(buf) == cap(buf) {
			if sizeHint >= 0 && int64(len(buf)) == sizeHint {
				// Expect EOF; a body longer than announced still reads
				// correctly through the growth below.
				var probe [1]byte
				n, err := io.ReadFull(r, probe[:])
				if n == 0 {
					if err == io.EOF || err == io.ErrUnexpectedEOF {
						return buf, nil
					}
					return nil, err
				}
				buf = append(buf, probe[0])
				sizeHint = -1
			}
			// Grow with what has arrived: 4x while the body keeps to its
			// Content-Length (few copies for large tensors), 2x otherwise.
			next := int64(cap(buf)) * 2
			if sizeHint > int64(len(buf)) {
				next = min(next*2, sizeHint)
			}
			next = min(next, limit+1)
			if next <= int64(len(buf)) {
				return nil, errBodyTooLarge
			}
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, errBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// responseEncoding picks the response compression from Accept-Encoding the
// way Triton does: the highest q among identity, gzip and deflate wins,
// the first listed wins a tie, identity when nothing matches.
func responseEncoding(acceptEncoding string) string {
	best, weight := "identity", 0.0
	for _, part := range strings.Split(acceptEncoding, ",") {
		name, q, hasQ := strings.Cut(strings.TrimLeft(part, " "), ";q=")
		if name == "" {
			continue
		}
		w := 1.0
		if hasQ {
			v, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
			if err != nil {
				continue
			}
			w = v
		}
		name = strings.TrimSpace(name)
		if (name == "identity" || name == "gzip" || name == "deflate") && w > weight {
			best, weight = name, w
		}
	}
	return best
}

var (
	gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(io.Discard) }}
	zlibWriters = sync.Pool{New: func() any { return zlib.NewWriter(io.Discard) }}
)

// compressedWriter wraps w in a pooled gzip or zlib writer; close flushes
// it and returns it to its pool.
func compressedWriter(w io.Writer, encoding string) (io.Writer, func() error) {
	switch encoding {
	case "gzip":
		zw := gzipWriters.Get().(*gzip.Writer)
		zw.Reset(w)
		return zw, func() error {
			err := zw.Close()
			gzipWriters.Put(zw)
			return err
		}
	case "deflate":
		zw := zlibWriters.Get().(*zlib.Writer)
		zw.Reset(w)
		return zw, func() error {
			err := zw.Close()
			zlibWriters.Put(zw)
			return err
		}
	}
	return w, func() error { return nil }
}
