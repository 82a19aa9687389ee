package check

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/helixflow/helixflow/internal/wire"
)

// sequenceFromJSONBody reads the top-level "parameters" object's
// "sequence_id" of a KServe v2 REST inference request from the first bytes
// of its body (Envoy sends a partial body; with the binary tensor
// extension the JSON head comes first and the tensors after it). It
// returns wire.HeaderSequence's value, "" when none is seen.
//
// It never refuses: a body it cannot read (cut short before the
// parameters, malformed, not JSON) yields "" and the worker, which reads
// the whole body, answers for it. tritonclient writes "parameters" after
// "inputs" and "outputs": values it is not looking for are skipped by a
// byte scanner without decoding them, so that a long JSON tensor costs a
// scan only; the parameters object alone is decoded. A key repeated keeps
// its last value, as Go's JSON decoding (the worker's) does. A body sent
// with Content-Encoding gzip or deflate (tritonclient's
// request_compression_algorithm; the worker accepts both) is inflated
// first, as far as its first bytes go.
func sequenceFromJSONBody(body []byte) string {
	body = inflated(body)
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return ""
	}
	seq := ""
	i++
	for {
		i = skipSpace(body, i)
		if i >= len(body) || body[i] == '}' {
			return seq
		}
		end := skipValue(body, i)
		if end < 0 || body[i] != '"' {
			return seq
		}
		key := body[i:end]
		i = skipSpace(body, end)
		if i >= len(body) || body[i] != ':' {
			return seq
		}
		i = skipSpace(body, i+1)
		end = skipValue(body, i)
		if end < 0 {
			return seq
		}
		if jsonKeyIs(key, "parameters") {
			if s, ok := sequenceFromParameters(body[i:end]); ok {
				seq = s
			}
		}
		i = skipSpace(body, end)
		if i < len(body) && body[i] == ',' {
			i++
		}
	}
}

// maxInflatedBytes bounds what a compressed body's first bytes are
// inflated to: a JSON head, not a bomb.
const maxInflatedBytes = 64 << 10

// inflated is body inflated when it starts as a gzip or zlib stream
// ("deflate" in HTTP) would, which JSON never does; else body. A stream cut
// short yields what it held so far.
func inflated(body []byte) []byte {
	src := bytes.NewReader(body)
	switch {
	case len(body) >= 2 && body[0] == 0x1f && body[1] == 0x8b:
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		defer gzipReaders.Put(zr)
		if zr.Reset(src) != nil {
			return nil
		}
		return readInflated(zr)
	case len(body) >= 2 && body[0]&0x0f == 8 && (uint(body[0])<<8|uint(body[1]))%31 == 0:
		zr, _ := zlibReaders.Get().(io.ReadCloser)
		if zr == nil {
			var err error
			if zr, err = zlib.NewReader(src); err != nil {
				return nil
			}
		} else if zr.(zlib.Resetter).Reset(src, nil) != nil {
			return nil
		}
		defer zlibReaders.Put(zr)
		return readInflated(zr)
	}
	return body
}

// Decompressors keep about 40 KiB of state each: pooled, since every
// compressed REST request of a sequence model inflates one.
var gzipReaders, zlibReaders sync.Pool

// readInflated reads at most maxInflatedBytes of r, as far as the (cut
// short) stream goes.
func readInflated(r io.Reader) []byte {
	out, _ := io.ReadAll(io.LimitReader(r, maxInflatedBytes))
	return out
}

// jsonKeyIs compares a JSON string token (with its quotes) to name as Go's
// JSON decoding matches a struct field's name (the worker's): without
// regard to case ("Parameters" is "parameters", by Unicode simple folding
// as bytes.EqualFold does), decoding escapes only when there are any.
func jsonKeyIs(tok []byte, name string) bool {
	if bytes.IndexByte(tok, '\\') < 0 {
		return len(tok) >= 2 && bytes.EqualFold(tok[1:len(tok)-1], []byte(name))
	}
	var s string
	return json.Unmarshal(tok, &s) == nil && strings.EqualFold(s, name)
}

// sequenceFromParameters reads "sequence_id" of a complete parameters
// value. ok: the object has the key (seq "" when its value names no
// sequence: zero, "", negative, fractional or of another type).
func sequenceFromParameters(v []byte) (seq string, ok bool) {
	var params map[string]json.RawMessage
	if json.Unmarshal(v, &params) != nil {
		return "", false
	}
	raw, ok := params["sequence_id"]
	if !ok {
		return "", false
	}
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", true
		}
		return wire.SequenceHeaderValue(0, s), true
	}
	n, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil {
		return "", true
	}
	return wire.SequenceHeaderValue(n, ""), true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value that starts at
// b[i], or -1 when it runs past the bytes (cut short) or is not one. It
// checks strings' and brackets' structure only: the parts it returns are
// decoded, and so checked, by encoding/json.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	case '}', ']', ',', ':':
		return -1
	default:
		// A number or a literal: it ends at a delimiter, which a value
		// inside the top-level object always has after it.
		for j := i; j < len(b); j++ {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
		}
		return -1
	}
}

// skipString returns the index just past the string that starts at b[i]
// ('"'), or -1.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}
