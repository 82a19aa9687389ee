package wire

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxModelNameBytes bounds a model name.
const MaxModelNameBytes = 255

// maxVersionDigits keeps every version an int64 (19 digits may overflow).
const maxVersionDigits = 18

// ErrModelName and ErrVersion are wrapped by CheckModelName's and
// CheckVersion's errors.
var (
	ErrModelName = errors.New("not a valid model name")
	ErrVersion   = errors.New("not a valid model version")
)

// CheckModelName returns nil if s can name a model, else an error wrapping
// ErrModelName that says what is wrong (the name itself is left to the
// caller, which knows where it came from). A model name is used as a URL
// path segment, a header value, a scope token and a folder name, so it is
// 1 to 255 bytes of printable UTF-8 without white space, '/', '\', '*'
// (the scope wildcard) or "..", and does not start with '.' (the model
// repository ignores such folders).
func CheckModelName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrModelName)
	case len(s) > MaxModelNameBytes:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrModelName, len(s), MaxModelNameBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not valid UTF-8", ErrModelName)
	case s[0] == '.':
		return fmt.Errorf("%w: starts with '.'", ErrModelName)
	case strings.Contains(s, ".."):
		return fmt.Errorf("%w: contains \"..\"", ErrModelName)
	}
	for i, r := range s {
		var why string
		switch {
		case r == '/' || r == '\\':
			why = "a path separator"
		case r == '*':
			why = "the wildcard of model scopes"
		case unicode.IsSpace(r):
			why = "white space"
		case !unicode.IsPrint(r) || r == utf8.RuneError:
			why = "not printable"
		default:
			continue
		}
		return fmt.Errorf("%w: byte %d is %q, %s", ErrModelName, i, r, why)
	}
	return nil
}

// CheckVersion returns nil if s is a model version as a path or a request
// names it: 1 to 18 decimal digits ("007" is version 7, as Triton reads
// it). An empty version, meaning the model's version policy, is the
// caller's to allow.
func CheckVersion(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrVersion)
	case len(s) > maxVersionDigits:
		return fmt.Errorf("%w: %d digits, at most %d", ErrVersion, len(s), maxVersionDigits)
	case !isDigits(s):
		return fmt.Errorf("%w: want decimal digits", ErrVersion)
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
