package gates

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The layout of api/compat: the last release's proto/ and api/*.yaml,
// copied from its tag, and the breaks accepted since.
const (
	CompatProto    = "proto"   // under api/compat: the release's proto/ tree
	CompatOpenAPI  = "openapi" // under api/compat: the release's api/*.yaml
	CompatRelease  = "RELEASE" // under api/compat: "<tag> <commit>"
	AcceptedBreaks = "accepted-breaks.yaml"
)

// BufConfig is buf's breaking configuration: the FILE category, buf's
// default and strictest (generated code must keep compiling, and the wire
// and JSON forms keep their meaning).
const BufConfig = `{"version":"v1","breaking":{"use":["FILE"]}}`

// Break is one breaking change a tool found.
type Break struct {
	Tool    string // buf or oasdiff
	File    string // proto/registry/v1/registry.proto, api/inference.yaml
	ID      string // buf's rule (FIELD_NO_DELETE) or oasdiff's check (api-path-removed-without-deprecation)
	Message string // for oasdiff, "GET /v2/health/live: " and its text
}

func (b Break) String() string {
	return fmt.Sprintf("%s %s [%s] %s", b.Tool, b.File, b.ID, b.Message)
}

// Accepted is one entry of accepted-breaks.yaml: a break declared on
// purpose, with its reason.
type Accepted struct {
	Tool   string `yaml:"tool"`
	File   string `yaml:"file"`
	ID     string `yaml:"id"`
	Text   string `yaml:"text"` // a part of the message; empty matches every message of tool, file and id
	Reason string `yaml:"reason"`
}

func (a Accepted) matches(b Break) bool {
	return a.Tool == b.Tool && a.File == b.File && a.ID == b.ID && strings.Contains(b.Message, a.Text)
}

// ReadAccepted reads accepted-breaks.yaml: a list under "accepted", each
// with tool, file, id and reason (text optional).
func ReadAccepted(name string) ([]Accepted, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Accepted []Accepted `yaml:"accepted"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i, a := range doc.Accepted {
		var missing []string
		for _, f := range []struct{ name, v string }{{"tool", a.Tool}, {"file", a.File}, {"id", a.ID}, {"reason", a.Reason}} {
			if strings.TrimSpace(f.v) == "" {
				missing = append(missing, f.name)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s: entry %d lacks %s", name, i+1, strings.Join(missing, ", "))
		}
		if a.Tool != "buf" && a.Tool != "oasdiff" {
			return nil, fmt.Errorf("%s: entry %d: tool %q: want buf or oasdiff", name, i+1, a.Tool)
		}
	}
	return doc.Accepted, nil
}

// Settle splits breaks into the accepted and the undeclared ones, and
// returns the entries that matched nothing (stale: the break is gone, or
// the entry is mistyped).
func Settle(breaks []Break, accepted []Accepted) (undeclared []Break, stale []Accepted) {
	used := make([]bool, len(accepted))
	for _, b := range breaks {
		ok := false
		for i, a := range accepted {
			if a.matches(b) {
				used[i], ok = true, true
			}
		}
		if !ok {
			undeclared = append(undeclared, b)
		}
	}
	for i, a := range accepted {
		if !used[i] {
			stale = append(stale, a)
		}
	}
	return undeclared, stale
}

// BufBreaks runs buf breaking on root/proto against base (the release's
// proto/ tree) and returns what it found, files named from root.
func BufBreaks(ctx context.Context, buf, root, base string) ([]Break, error) {
	cmd := exec.CommandContext(ctx, buf, "breaking", "proto", "--against", base, "--config", BufConfig, "--error-format", "json")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	// buf exits 100 when it found breaking changes.
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 100) {
		return nil, fmt.Errorf("buf breaking: %w: %s%s", err, out, stderr.Bytes())
	}
	var breaks []Break
	var compile []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var a struct {
			Path    string `json:"path"`
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, fmt.Errorf("buf breaking: a line that is not JSON: %q", sc.Text())
		}
		if a.Type == "COMPILE" { // the protos do not compile: no comparison was made
			compile = append(compile, a.Path+": "+a.Message)
			continue
		}
		breaks = append(breaks, Break{Tool: "buf", File: filepath.ToSlash(a.Path), ID: a.Type, Message: a.Message})
	}
	if len(compile) > 0 {
		return nil, fmt.Errorf("buf breaking: the protos do not compile: %s", strings.Join(compile[:min(len(compile), 5)], "; "))
	}
	if err != nil && len(breaks) == 0 {
		return nil, fmt.Errorf("buf breaking failed without naming a change: %s", stderr.Bytes())
	}
	return breaks, nil
}

// OasdiffBreaks runs oasdiff breaking on one OpenAPI file against its
// release copy. Only errors (level 3, breaking) are returned; warnings
// (possibly breaking) are written to warn.
func OasdiffBreaks(ctx context.Context, oasdiff, base, rev, name string, warn io.Writer) ([]Break, error) {
	cmd := exec.CommandContext(ctx, oasdiff, "breaking", base, rev, "--format", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("oasdiff breaking %s: %w: %s", name, err, stderr.Bytes())
	}
	var changes []struct {
		ID        string `json:"id"`
		Text      string `json:"text"`
		Level     int    `json:"level"`
		Operation string `json:"operation"`
		Path      string `json:"path"`
	}
	if err := json.Unmarshal(out, &changes); err != nil {
		return nil, fmt.Errorf("oasdiff breaking %s: %w", name, err)
	}
	var breaks []Break
	for _, c := range changes {
		msg := c.Text
		if c.Path != "" {
			msg = strings.TrimSpace(c.Operation+" "+c.Path) + ": " + c.Text
		}
		b := Break{Tool: "oasdiff", File: name, ID: c.ID, Message: msg}
		if c.Level >= 3 {
			breaks = append(breaks, b)
		} else if warn != nil {
			fmt.Fprintf(warn, "gates: warning (possibly breaking, not gated): %s\n", b)
		}
	}
	return breaks, nil
}

// APIBreaks checks proto/ and every api/*.yaml of root against compat (the
// release copies). An OpenAPI file the release lacks is new, not a break;
// one the release had that is gone is one.
func APIBreaks(ctx context.Context, buf, oasdiff, root, compat string, warn io.Writer) ([]Break, error) {
	breaks, err := BufBreaks(ctx, buf, root, filepath.Join(compat, CompatProto))
	if err != nil {
		return nil, err
	}
	olds, err := filepath.Glob(filepath.Join(compat, CompatOpenAPI, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(olds) == 0 {
		return nil, fmt.Errorf("%s holds no *.yaml: regenerate it (make gates-api-baseline TAG=...)", filepath.Join(compat, CompatOpenAPI))
	}
	for _, old := range olds {
		name := "api/" + filepath.Base(old)
		cur := filepath.Join(root, filepath.FromSlash(name))
		if _, err := os.Stat(cur); errors.Is(err, os.ErrNotExist) {
			breaks = append(breaks, Break{Tool: "oasdiff", File: name, ID: "file-removed", Message: "the release's OpenAPI file is gone"})
			continue
		}
		bs, err := OasdiffBreaks(ctx, oasdiff, old, cur, name, warn)
		if err != nil {
			return nil, err
		}
		breaks = append(breaks, bs...)
	}
	slices.SortStableFunc(breaks, func(a, b Break) int { return strings.Compare(a.File, b.File) })
	return breaks, nil
}

// WriteCompat replaces compat's release copies with the files of tag in
// the repository at root: every proto/**.proto and api/*.yaml, read with
// git show (no checkout), the tag and its commit in RELEASE, and an empty
// accepted-breaks.yaml (the breaks accepted against the previous release
// are in this one).
func WriteCompat(ctx context.Context, root, compat, tag string) error {
	git := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, stderr.Bytes())
		}
		return out, nil
	}
	commit, err := git("rev-parse", "--verify", tag+"^{commit}")
	if err != nil {
		return err
	}
	list, err := git("ls-tree", "-r", "--name-only", tag, "--", "proto", "api")
	if err != nil {
		return err
	}
	for _, d := range []string{CompatProto, CompatOpenAPI} {
		if err := os.RemoveAll(filepath.Join(compat, d)); err != nil {
			return err
		}
	}
	n := 0
	for name := range strings.SplitSeq(strings.TrimSpace(string(list)), "\n") {
		var dst string
		switch {
		case strings.HasPrefix(name, "proto/") && strings.HasSuffix(name, ".proto"):
			dst = filepath.Join(compat, CompatProto, filepath.FromSlash(strings.TrimPrefix(name, "proto/")))
		case filepath.Dir(name) == "api" && strings.HasSuffix(name, ".yaml"):
			dst = filepath.Join(compat, CompatOpenAPI, filepath.Base(name))
		default:
			continue
		}
		data, err := git("show", tag+":"+name)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s has no proto/**.proto or api/*.yaml", tag)
	}
	if err := os.WriteFile(filepath.Join(compat, CompatRelease), fmt.Appendf(nil, "%s %s\n", tag, strings.TrimSpace(string(commit))), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(compat, AcceptedBreaks), fmt.Appendf(nil, acceptedHeader, tag), 0o644)
}

const acceptedHeader = `# Breaking API changes made on purpose since %s (api/compat/RELEASE),
# each with its reason; make gates fails on any other (docs/performance.md,
# "Regression gates"). An entry matches a change of its tool (buf, oasdiff),
# file (proto/... or api/...) and id (buf's rule, oasdiff's check) whose
# message contains text (empty: any). An entry that matches nothing fails
# too. make gates-api-baseline TAG=<next release> starts the list afresh.
#
# accepted:
#   - tool: buf
#     file: proto/registry/v1/registry.proto
#     id: FIELD_NO_DELETE
#     text: 'field "3" with name "zone"'
#     reason: no released worker ever set it (issue NN)
accepted: []
`
