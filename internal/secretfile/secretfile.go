// Package secretfile reads a secret the way every HelixFlow binary takes
// one: from a file named by a flag, or else from an environment variable,
// never from a command-line value (which every user of the machine can
// read in ps and which shells keep in their history).
package secretfile

import (
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Read returns the trimmed contents of file when it is given, else the
// value of the environment variable env ("" names none); "" when neither
// is set. flag names the file's flag in errors.
func Read(flag, file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flag, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if env == "" {
		return "", nil
	}
	return os.Getenv(env), nil
}

// URLHoldsPassword reports whether a Postgres connection string holds a
// password (in a URL's user part, or as password= in key=value form or a
// URL's query), which must then come from the environment rather than a
// command-line flag.
func URLHoldsPassword(dsn string) bool {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return true
		}
	}
	return strings.Contains(dsn, "password=")
}
