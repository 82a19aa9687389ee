package httpapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/helixflow/helixflow/workers/tensor"
)

// maxDataDepth bounds the nesting of a tensor's JSON "data" array, as
// Triton's HTTP_MAX_JSON_NESTING_DEPTH does.
const maxDataDepth = 100

// decodeJSONData turns the JSON "data" array of one input into the tensor's
// little-endian bytes. Nested and flat arrays are both read in row-major
// order, as Triton reads them. want is the element count the shape asks for;
// maxBytes bounds the decoded size. Errors name the element that was wrong
// but not the input: the caller adds that.
func decodeJSONData(raw []byte, dt tensor.DataType, want int64, maxBytes int64) ([]byte, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("unknown datatype %q", dt)
	}
	if want < 0 {
		return nil, fmt.Errorf("negative element count %d", want)
	}
	size := int64(dt.ElementSize())
	if dt == tensor.Bytes {
		size = 4 // the length prefix; the payload is checked while decoding
	}
	// Every element takes at least one byte of JSON text plus a separator,
	// so the text, not the shape, bounds what we allocate up front.
	capElems := min(want, int64(len(raw)+1)/2)
	if want == capElems && want > maxBytes/size {
		return nil, fmt.Errorf("decoded data would take %d bytes, more than the limit of %d", want*size, maxBytes)
	}
	d := dataDecoder{src: raw, dt: dt, out: make([]byte, 0, capElems*size), maxBytes: maxBytes}
	if err := d.decode(); err != nil {
		return nil, err
	}
	if d.count != want {
		return nil, fmt.Errorf("'data' has %d elements, shape needs %d", d.count, want)
	}
	return d.out, nil
}

// dataDecoder is a small scanner for the JSON arrays of scalars that tensor
// data is made of. It checks the JSON syntax itself so that it is safe on any
// input, not only on text encoding/json already accepted.
type dataDecoder struct {
	src      []byte
	pos      int
	dt       tensor.DataType
	out      []byte
	count    int64
	maxBytes int64
}

func (d *dataDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("'data' at offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *dataDecoder) skipSpace() {
	for d.pos < len(d.src) {
		switch d.src[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *dataDecoder) decode() error {
	d.skipSpace()
	if d.pos >= len(d.src) || d.src[d.pos] != '[' {
		return errors.New("'data' must be an array")
	}
	if err := d.array(1); err != nil {
		return err
	}
	d.skipSpace()
	if d.pos != len(d.src) {
		return d.errorf("unexpected text after the array")
	}
	return nil
}

// array reads one array, src[pos] being its '['.
func (d *dataDecoder) array(depth int) error {
	if depth > maxDataDepth {
		return d.errorf("arrays nested deeper than %d", maxDataDepth)
	}
	d.pos++ // '['
	d.skipSpace()
	if d.pos < len(d.src) && d.src[d.pos] == ']' {
		d.pos++
		return nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.src) {
			return d.errorf("unexpected end of array")
		}
		if d.src[d.pos] == '[' {
			if err := d.array(depth + 1); err != nil {
				return err
			}
		} else if err := d.element(); err != nil {
			return err
		}
		d.skipSpace()
		if d.pos >= len(d.src) {
			return d.errorf("unexpected end of array")
		}
		switch d.src[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return nil
		default:
			return d.errorf("expected ',' or ']', found %q", d.src[d.pos])
		}
	}
}

// element reads one scalar and appends its binary form to out.
func (d *dataDecoder) element() error {
	if int64(len(d.out)) > d.maxBytes {
		return fmt.Errorf("decoded data is larger than the limit of %d bytes", d.maxBytes)
	}
	c := d.src[d.pos]
	var err error
	switch {
	case c == '"':
		err = d.stringElement()
	case c == 't' || c == 'f' || c == 'n':
		err = d.literalElement()
	case c == '-' || (c >= '0' && c <= '9'):
		err = d.numberElement()
	default:
		err = d.errorf("unexpected character %q", c)
	}
	if err != nil {
		return err
	}
	d.count++
	return nil
}

func (d *dataDecoder) literalElement() error {
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(d.src)-d.pos >= len(lit) && string(d.src[d.pos:d.pos+len(lit)]) == lit {
			if lit == "null" || d.dt != tensor.Bool {
				return d.errorf("element %d: expected %s, got %s", d.count, expectedKind(d.dt), lit)
			}
			d.pos += len(lit)
			if lit == "true" {
				d.out = append(d.out, 1)
			} else {
				d.out = append(d.out, 0)
			}
			return nil
		}
	}
	return d.errorf("invalid literal")
}

func expectedKind(dt tensor.DataType) string {
	switch dt {
	case tensor.Bool:
		return "true or false"
	case tensor.Bytes:
		return "a string"
	default:
		return "a number"
	}
}

// numberToken scans a JSON number and reports whether it is an integer
// (no fraction, no exponent).
func (d *dataDecoder) numberToken() (tok []byte, integer bool, err error) {
	start := d.pos
	p := d.pos
	src := d.src
	if p < len(src) && src[p] == '-' {
		p++
	}
	switch {
	case p < len(src) && src[p] == '0':
		p++
	case p < len(src) && src[p] >= '1' && src[p] <= '9':
		for p < len(src) && src[p] >= '0' && src[p] <= '9' {
			p++
		}
	default:
		d.pos = p
		return nil, false, d.errorf("invalid number")
	}
	integer = true
	if p < len(src) && src[p] == '.' {
		integer = false
		p++
		if p >= len(src) || src[p] < '0' || src[p] > '9' {
			d.pos = p
			return nil, false, d.errorf("invalid number")
		}
		for p < len(src) && src[p] >= '0' && src[p] <= '9' {
			p++
		}
	}
	if p < len(src) && (src[p] == 'e' || src[p] == 'E') {
		integer = false
		p++
		if p < len(src) && (src[p] == '+' || src[p] == '-') {
			p++
		}
		if p >= len(src) || src[p] < '0' || src[p] > '9' {
			d.pos = p
			return nil, false, d.errorf("invalid number")
		}
		for p < len(src) && src[p] >= '0' && src[p] <= '9' {
			p++
		}
	}
	d.pos = p
	return src[start:p], integer, nil
}

func (d *dataDecoder) numberElement() error {
	at := d.count
	tok, integer, err := d.numberToken()
	if err != nil {
		return err
	}
	outOfRange := func() error {
		return fmt.Errorf("'data' element %d: value %s is out of range for %s", at, tok, d.dt)
	}
	switch d.dt {
	case tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64:
		if !integer {
			return fmt.Errorf("'data' element %d: value %s is not an integer, %s needs one", at, tok, d.dt)
		}
		bits := d.dt.ElementSize() * 8
		v, err := strconv.ParseInt(string(tok), 10, bits)
		if err != nil {
			return outOfRange()
		}
		d.out = appendInt(d.out, uint64(v), d.dt.ElementSize())
	case tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		if !integer {
			return fmt.Errorf("'data' element %d: value %s is not an integer, %s needs one", at, tok, d.dt)
		}
		bits := d.dt.ElementSize() * 8
		v, err := strconv.ParseUint(string(tok), 10, bits)
		if err != nil {
			return outOfRange()
		}
		d.out = appendInt(d.out, v, d.dt.ElementSize())
	case tensor.FP32:
		v, err := strconv.ParseFloat(string(tok), 32)
		if err != nil {
			return outOfRange()
		}
		d.out = binary.LittleEndian.AppendUint32(d.out, math.Float32bits(float32(v)))
	case tensor.FP64:
		v, err := strconv.ParseFloat(string(tok), 64)
		if err != nil {
			return outOfRange()
		}
		d.out = binary.LittleEndian.AppendUint64(d.out, math.Float64bits(v))
	case tensor.FP16, tensor.BF16:
		v, err := strconv.ParseFloat(string(tok), 64)
		if err != nil {
			return outOfRange()
		}
		var h uint16
		var ok bool
		if d.dt == tensor.FP16 {
			h, ok = tensor.Float64ToFP16(v)
		} else {
			h, ok = tensor.Float64ToBF16(v)
		}
		if !ok {
			return outOfRange()
		}
		d.out = binary.LittleEndian.AppendUint16(d.out, h)
	default:
		return fmt.Errorf("'data' element %d: expected %s, got number %s", at, expectedKind(d.dt), tok)
	}
	return nil
}

func appendInt(dst []byte, v uint64, size int) []byte {
	switch size {
	case 1:
		return append(dst, byte(v))
	case 2:
		return binary.LittleEndian.AppendUint16(dst, uint16(v))
	case 4:
		return binary.LittleEndian.AppendUint32(dst, uint32(v))
	default:
		return binary.LittleEndian.AppendUint64(dst, v)
	}
}

// stringElement appends a BYTES element: its 4-byte length, then its bytes.
// Like Triton, bytes that are not valid UTF-8 are passed through as they are.
func (d *dataDecoder) stringElement() error {
	if d.dt != tensor.Bytes {
		return d.errorf("element %d: expected %s, got a string", d.count, expectedKind(d.dt))
	}
	lenAt := len(d.out)
	d.out = append(d.out, 0, 0, 0, 0)
	d.pos++ // opening quote
	for {
		// Copy the run up to the next quote, backslash or control byte.
		run := d.pos
		for d.pos < len(d.src) {
			c := d.src[d.pos]
			if c == '"' || c == '\\' || c < 0x20 {
				break
			}
			d.pos++
		}
		d.out = append(d.out, d.src[run:d.pos]...)
		if d.pos >= len(d.src) {
			return d.errorf("unterminated string")
		}
		c := d.src[d.pos]
		if c == '"' {
			d.pos++
			break
		}
		if c < 0x20 {
			return d.errorf("control character in string")
		}
		if err := d.escape(); err != nil {
			return err
		}
	}
	n := len(d.out) - lenAt - 4
	if uint64(n) > math.MaxUint32 {
		return d.errorf("string longer than 4 GiB")
	}
	binary.LittleEndian.PutUint32(d.out[lenAt:], uint32(n))
	return nil
}

// escape decodes one backslash escape, src[pos] being the backslash.
func (d *dataDecoder) escape() error {
	if d.pos+1 >= len(d.src) {
		return d.errorf("unterminated string")
	}
	c := d.src[d.pos+1]
	d.pos += 2
	switch c {
	case '"', '\\', '/':
		d.out = append(d.out, c)
	case 'b':
		d.out = append(d.out, '\b')
	case 'f':
		d.out = append(d.out, '\f')
	case 'n':
		d.out = append(d.out, '\n')
	case 'r':
		d.out = append(d.out, '\r')
	case 't':
		d.out = append(d.out, '\t')
	case 'u':
		r, ok := d.hex4()
		if !ok {
			return d.errorf("invalid \\u escape")
		}
		if utf16.IsSurrogate(r) {
			// A surrogate pair is two escapes; a lone half becomes U+FFFD,
			// as encoding/json decodes it.
			save := d.pos
			if d.pos+1 < len(d.src) && d.src[d.pos] == '\\' && d.src[d.pos+1] == 'u' {
				d.pos += 2
				if r2, ok := d.hex4(); ok {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						d.out = utf8.AppendRune(d.out, dec)
						return nil
					}
				}
			}
			d.pos = save
			r = utf8.RuneError
		}
		d.out = utf8.AppendRune(d.out, r)
	default:
		return d.errorf("invalid escape '\\%c'", c)
	}
	return nil
}

func (d *dataDecoder) hex4() (rune, bool) {
	if d.pos+4 > len(d.src) {
		return 0, false
	}
	var r rune
	for _, c := range d.src[d.pos : d.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	d.pos += 4
	return r, true
}

// appendJSONData writes t's elements as a flat JSON array, formatting
// numbers the way Triton's JSON writer (rapidjson) does. FP16 and BF16 are
// written as numbers too, where Triton refuses them.
func appendJSONData(dst []byte, t *tensor.Tensor) ([]byte, error) {
	n, err := tensor.ElementCount(t.Shape)
	if err != nil {
		return dst, err
	}
	data := t.Data
	if t.DataType != tensor.Bytes {
		want := n * int64(t.DataType.ElementSize())
		if int64(len(data)) != want {
			return dst, fmt.Errorf("output %q has %d bytes of data, shape %v of %s needs %d",
				t.Name, len(data), t.Shape, t.DataType, want)
		}
	}
	dst = append(dst, '[')
	le := binary.LittleEndian
	for i := int64(0); i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		switch t.DataType {
		case tensor.Bool:
			dst = strconv.AppendBool(dst, data[i] != 0)
		case tensor.Uint8:
			dst = strconv.AppendUint(dst, uint64(data[i]), 10)
		case tensor.Uint16:
			dst = strconv.AppendUint(dst, uint64(le.Uint16(data[2*i:])), 10)
		case tensor.Uint32:
			dst = strconv.AppendUint(dst, uint64(le.Uint32(data[4*i:])), 10)
		case tensor.Uint64:
			dst = strconv.AppendUint(dst, le.Uint64(data[8*i:]), 10)
		case tensor.Int8:
			dst = strconv.AppendInt(dst, int64(int8(data[i])), 10)
		case tensor.Int16:
			dst = strconv.AppendInt(dst, int64(int16(le.Uint16(data[2*i:]))), 10)
		case tensor.Int32:
			dst = strconv.AppendInt(dst, int64(int32(le.Uint32(data[4*i:]))), 10)
		case tensor.Int64:
			dst = strconv.AppendInt(dst, int64(le.Uint64(data[8*i:])), 10)
		case tensor.FP16:
			dst = appendDouble(dst, tensor.FP16ToFloat64(le.Uint16(data[2*i:])))
		case tensor.BF16:
			dst = appendDouble(dst, tensor.BF16ToFloat64(le.Uint16(data[2*i:])))
		case tensor.FP32:
			dst = appendDouble(dst, float64(math.Float32frombits(le.Uint32(data[4*i:]))))
		case tensor.FP64:
			dst = appendDouble(dst, math.Float64frombits(le.Uint64(data[8*i:])))
		case tensor.Bytes:
			if len(data) < 4 {
				return dst, fmt.Errorf("output %q: BYTES element %d: length prefix runs past the end of the data", t.Name, i)
			}
			l := le.Uint32(data)
			if uint64(l) > uint64(len(data)-4) {
				return dst, fmt.Errorf("output %q: BYTES element %d: length %d runs past the end of the data", t.Name, i, l)
			}
			dst = appendJSONString(dst, data[4:4+l])
			data = data[4+l:]
		default:
			return dst, fmt.Errorf("output %q has unknown datatype %q", t.Name, t.DataType)
		}
	}
	if t.DataType == tensor.Bytes && len(data) != 0 {
		return dst, fmt.Errorf("output %q: %d bytes left after %d BYTES elements", t.Name, len(data), n)
	}
	return append(dst, ']'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as rapidjson does: quote, backslash and control
// bytes are escaped, every other byte (including invalid UTF-8) is copied.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	run := 0
	for i, c := range s {
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[run:i]...)
		run = i + 1
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	dst = append(dst, s[run:]...)
	return append(dst, '"')
}

// appendDouble formats v as rapidjson's Writer::Double does: the shortest
// digits that read back as v, in decimal notation when the decimal point
// falls within 21 digits ("1.0", "0.001"), else as "1.5e-7"; NaN and
// infinities as NaN, Infinity and -Infinity.
func appendDouble(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	case math.IsInf(v, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(v, -1):
		return append(dst, "-Infinity"...)
	}
	if math.Signbit(v) {
		dst = append(dst, '-')
		v = -v
	}
	if v == 0 {
		return append(dst, "0.0"...)
	}
	if v >= 1e-5 && v < 1e20 {
		// Well inside the decimal-notation range, where the shortest 'f'
		// form is rapidjson's output except for the ".0" of integers.
		start := len(dst)
		dst = strconv.AppendFloat(dst, v, 'f', -1, 64)
		for _, c := range dst[start:] {
			if c == '.' {
				return dst
			}
		}
		return append(dst, '.', '0')
	}
	// 'e' format gives d.ddddde±XX: the shortest digits and the exponent.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], v, 'e', -1, 64)
	mark := 0
	for mark < len(e) && e[mark] != 'e' {
		mark++
	}
	var digits [24]byte
	nd := 0
	for _, c := range e[:mark] {
		if c != '.' {
			digits[nd] = c
			nd++
		}
	}
	exp, _ := strconv.Atoi(string(e[mark+1:]))
	// value = 0.digits × 10^kk
	kk := exp + 1
	k := kk - nd // value = digits × 10^k
	switch {
	case k >= 0 && kk <= 21:
		dst = append(dst, digits[:nd]...)
		for i := 0; i < k; i++ {
			dst = append(dst, '0')
		}
		return append(dst, '.', '0')
	case kk > 0 && kk <= 21:
		dst = append(dst, digits[:kk]...)
		dst = append(dst, '.')
		return append(dst, digits[kk:nd]...)
	case kk > -6 && kk <= 0:
		dst = append(dst, '0', '.')
		for i := kk; i < 0; i++ {
			dst = append(dst, '0')
		}
		return append(dst, digits[:nd]...)
	}
	dst = append(dst, digits[0])
	if nd > 1 {
		dst = append(dst, '.')
		dst = append(dst, digits[1:nd]...)
	}
	dst = append(dst, 'e')
	return strconv.AppendInt(dst, int64(kk-1), 10)
}
