package check

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// pinnedImage is an image reference with a tag and a sha256 digest.
var pinnedImage = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]*(:[0-9]+)?/?[a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*@sha256:[0-9a-f]{64}$`)

// secretName names build arguments and environment variables that would
// leak a secret into an image's layers or history.
var secretName = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY)`)

// Dockerfile checks one Dockerfile against HelixFlow's image rules and
// returns every violation with its line:
//
//   - every FROM names an earlier stage or ${ARG} whose default, declared
//     before the first FROM, is an image pinned by tag and sha256 digest
//     (so updating a base is a reviewed change, and --build-arg overrides it);
//   - no ADD (COPY only: no URLs, no archive unpacking);
//   - no curl/wget piped into a shell;
//   - no secret-looking ARG or ENV;
//   - the final stage runs as a numeric, non-root USER and has an
//     exec-form ENTRYPOINT.
func Dockerfile(name string, src []byte) []error {
	var errs []error
	add := func(line int, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, a...)))
	}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return []error{fmt.Errorf("%s: %w", name, err)}
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", name, err)}
	}
	if len(stages) == 0 {
		return []error{fmt.Errorf("%s: no FROM", name)}
	}
	defaults := map[string]string{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				defaults[kv.Key] = *kv.Value
			}
			if secretName.MatchString(kv.Key) {
				add(line(a.Location()), "ARG %s looks like a secret; build arguments stay in the image's history", kv.Key)
			}
		}
	}
	var names []string
	for i, st := range stages {
		from := line(st.Location)
		base := st.BaseName
		switch {
		case slices.Contains(names, strings.ToLower(base)):
			// an earlier stage
		case strings.HasPrefix(base, "${") && strings.HasSuffix(base, "}"):
			arg := strings.TrimSuffix(strings.TrimPrefix(base, "${"), "}")
			def, ok := defaults[arg]
			switch {
			case !ok:
				add(from, "FROM %s: ARG %s has no default before the first FROM", base, arg)
			case !pinnedImage.MatchString(def):
				add(from, "FROM %s: ARG %s=%q is not pinned as name:tag@sha256:<digest>", base, arg, def)
			case strings.Contains(def, ":latest@"):
				add(from, "FROM %s: ARG %s uses the tag latest", base, arg)
			}
		default:
			add(from, "FROM %s: name the base image through an ARG with a pinned default (FROM ${..._IMAGE})", base)
		}
		names = append(names, strings.ToLower(st.Name))
		final := i == len(stages)-1
		var user string
		var userLine int
		var entrypoint *instructions.EntrypointCommand
		for _, cmd := range st.Commands {
			l := line(cmd.Location())
			switch c := cmd.(type) {
			case *instructions.AddCommand:
				add(l, "ADD: use COPY (ADD fetches URLs and unpacks archives)")
			case *instructions.RunCommand:
				run := strings.Join(c.CmdLine, " ")
				if regexp.MustCompile(`(curl|wget)[^|]*\|\s*(ba|z)?sh\b`).MatchString(run) {
					add(l, "RUN pipes a download into a shell")
				}
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					if secretName.MatchString(kv.Key) {
						add(l, "ENV %s looks like a secret; it would stay in the image", kv.Key)
					}
				}
			case *instructions.ArgCommand:
				for _, kv := range c.Args {
					if secretName.MatchString(kv.Key) {
						add(l, "ARG %s looks like a secret; build arguments stay in the image's history", kv.Key)
					}
				}
			case *instructions.UserCommand:
				user, userLine = c.User, l
			case *instructions.EntrypointCommand:
				entrypoint = c
			}
		}
		if !final {
			continue
		}
		switch {
		case user == "":
			add(from, "final stage: no USER; the image would run as its base's user")
		default:
			uid, _, _ := strings.Cut(user, ":")
			n, err := strconv.Atoi(uid)
			switch {
			case err != nil:
				add(userLine, "USER %s: use a numeric uid, so Kubernetes can verify runAsNonRoot", user)
			case n == 0:
				add(userLine, "USER %s is root", user)
			}
		}
		switch {
		case entrypoint == nil:
			add(from, "final stage: no ENTRYPOINT")
		case entrypoint.PrependShell:
			add(line(entrypoint.Location()), "ENTRYPOINT in shell form; use the exec form [\"/path\", ...] (there may be no shell, and signals must reach the process)")
		}
	}
	return errs
}

func line(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}

// DockerIgnore checks that .dockerignore keeps what must never enter an
// image out of the build context.
func DockerIgnore(src []byte) []error {
	have := map[string]bool{}
	for l := range strings.Lines(string(src)) {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			have[strings.TrimPrefix(l, "/")] = true
		}
	}
	var errs []error
	for _, want := range []string{".git", ".venv", ".deps", ".tools", ".helix", "bin"} {
		if !have[want] {
			errs = append(errs, fmt.Errorf(".dockerignore: %s is not excluded", want))
		}
	}
	return errs
}
