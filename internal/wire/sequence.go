package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// maxSequenceHeaderLen bounds HeaderSequence: a longer string id is
// hashed (the value only needs to be the same for the same id).
const maxSequenceHeaderLen = 128

// SequenceHeaderValue is HeaderSequence's value for a correlation id:
// the number in decimal, or a string id as "s:" and its bytes with every
// byte that is not an ASCII letter, digit, '-', '.', '_' or '~'
// percent-encoded, or, when that is longer than 128 bytes, "h:" and the
// hex SHA-256 of the string. A number and a string never share a value.
// "" for the zero id (no sequence: Triton reserves 0 and "").
func SequenceHeaderValue(num uint64, str string) string {
	if str == "" {
		if num == 0 {
			return ""
		}
		return strconv.FormatUint(num, 10)
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, 2+len(str))
	b = append(b, "s:"...)
	for i := 0; i < len(str); i++ {
		c := str[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b = append(b, c)
		default:
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		}
		if len(b) > maxSequenceHeaderLen {
			sum := sha256.Sum256([]byte(str))
			return "h:" + hex.EncodeToString(sum[:])
		}
	}
	return string(b)
}
