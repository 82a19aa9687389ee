package password

import (
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// NIST SP 800-63B 5.1.1.2: at least 8 characters, at least 64 allowed, no
// composition rules, no hints, and a check against known common passwords
// and context words. Characters are counted as Unicode code points after
// NFC normalisation (the form that is hashed), so "é" typed precomposed or
// combined counts once and verifies the same.
const (
	MinLength = 8
	MaxLength = 64
)

// ErrRule wraps every refusal of a new password; the message says which
// rule and is safe to show.
var ErrRule = errors.New("password refused")

//go:embed common.txt
var commonFile string

// common is the embedded list as a set, built on first use.
var common = sync.OnceValue(func() map[string]struct{} {
	set := make(map[string]struct{}, 16384)
	for line := range strings.Lines(commonFile) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		set[line] = struct{}{}
	}
	return set
})

// CommonCount is how many common passwords are refused.
func CommonCount() int { return len(common()) }

// Check applies the rules to a new password for the account email. The
// error wraps ErrRule and names the rule broken.
func Check(pw, email string) error {
	n := utf8.RuneCountInString(norm.NFC.String(pw))
	switch {
	case !utf8.ValidString(pw):
		return fmt.Errorf("%w: it is not valid UTF-8", ErrRule)
	case n < MinLength:
		return fmt.Errorf("%w: it has %d characters; at least %d are needed", ErrRule, n, MinLength)
	case n > MaxLength:
		return fmt.Errorf("%w: it has %d characters; at most %d are allowed", ErrRule, n, MaxLength)
	}
	folded := strings.ToLower(norm.NFC.String(pw))
	if _, ok := common()[folded]; ok {
		return fmt.Errorf("%w: it is on a list of commonly used passwords", ErrRule)
	}
	if email = strings.ToLower(strings.TrimSpace(email)); email != "" {
		local, _, _ := strings.Cut(email, "@")
		if folded == email || folded == local {
			return fmt.Errorf("%w: it is the account's email address", ErrRule)
		}
	}
	return nil
}
