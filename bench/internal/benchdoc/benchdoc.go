// Package benchdoc is what the benchmarks share in writing their reports:
// the repository they run in, their own section of docs/benchmarks.md,
// number formatting, and the commit they measured.
package benchdoc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/helixflow/helixflow/internal/atomicfile"
)

// RepoRoot finds the repository root, the folder holding marker (a path
// relative to it), from the working directory up.
func RepoRoot(marker string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, marker)); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from the repository (" + marker + " not found above the working directory)")
		}
		dir = parent
	}
}

// WriteSection replaces the part of the file at path from the line begin
// to the line end (both markers included) with section, or appends section
// when the file has neither marker; nothing else in the file changes.
func WriteSection(path, begin, end, section string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc []byte
	i, j := bytes.Index(old, []byte(begin)), bytes.Index(old, []byte(end))
	switch {
	case i >= 0 && j > i:
		rest := bytes.TrimPrefix(old[j+len(end):], []byte("\n"))
		doc = append(append(append([]byte{}, old[:i]...), section...), rest...)
	case i >= 0 || j >= 0:
		return fmt.Errorf("%s: only one of the markers %s and %s is there, or they are out of order", path, begin, end)
	default:
		doc = append(append(bytes.TrimRight(old, "\n"), "\n\n"...), section...)
	}
	return atomicfile.Write(path, doc, 0o644)
}

// GitCommit names HEAD, and says so when tracked files under sources (the
// sources of what was measured; make builds the working tree) differ from
// it.
func GitCommit(sources ...string) string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	args := append([]string{"status", "--porcelain", "--untracked-files=no", "--"}, sources...)
	dirty, err := exec.Command("git", args...).Output()
	if err == nil && len(bytes.TrimSpace(dirty)) > 0 {
		c += " with uncommitted changes to its sources"
	}
	return c
}

// MetOrMissed words a goal's outcome.
func MetOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// Ratio is a/b as "1.23x", with fewer decimals from 10x up and more below
// 0.1x; "n/a" when b is 0.
func Ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	r := a / b
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0fx", r)
	case r >= 0.1:
		return fmt.Sprintf("%.2fx", r)
	}
	return fmt.Sprintf("%.3fx", r)
}

// Commas formats v rounded, with thousands separators.
func Commas(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// FirstLine is s's first line, trimmed.
func FirstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
