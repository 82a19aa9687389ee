package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/helixflow/helixflow/xds/ir"
)

// FieldError is one problem in the file, with the field's path (empty for
// a YAML syntax or type error) and line.
type FieldError struct {
	File   string
	Line   int // 0: unknown (a field that is absent, or a Config built in code)
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	where := e.File
	if e.Line > 0 {
		where += ":" + strconv.Itoa(e.Line)
	}
	if e.Field == "" {
		return where + ": " + e.Reason
	}
	return where + ": " + e.Field + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// Validate checks the config: its own fields, then the gateway model it
// produces (ir.Gateway.ValidateStatic), every error named by the config
// file's field path and line.
func (c *Config) Validate() error {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if _, _, err := hostPort(c.AuthZ.Address); err != nil {
		add("authz.address", "%v", err)
	}
	if rl := c.RateLimit; rl != nil {
		if _, _, err := hostPort(rl.Address); err != nil {
			add("ratelimit.address", "%v", err)
		}
		if rl.FailureMode != "" && rl.FailureMode != FailOpen && rl.FailureMode != FailClosed {
			add("ratelimit.failure_mode", "must be %q or %q, got %q", FailOpen, FailClosed, rl.FailureMode)
		}
		if _, ok := c.Plans[rl.DefaultPlan]; rl.DefaultPlan != "" && !ok {
			add("ratelimit.default_plan", "no plan named %q under plans", rl.DefaultPlan)
		}
	}
	for _, name := range c.planNames() {
		p := c.Plans[name]
		f := "plans." + name
		if !validPlanName(name) {
			add(f, "plan names are letters, digits, '-', '_' or '.' (at most 64)")
		}
		if p.RequestsPerSecond == 0 && p.RequestsPerMinute == 0 {
			add(f, "needs requests_per_second or requests_per_minute")
		}
	}

	// The model's own rules, mapped back to the file's field names. A
	// field the config already reported is not reported twice.
	if err := c.Gateway().ValidateStatic(); err != nil {
		for _, e := range flatten(err) {
			var fe *ir.FieldError
			if !errors.As(e, &fe) {
				add("", "%v", e)
				continue
			}
			field := c.fileField(fe.Field)
			if slices.ContainsFunc(errs, func(x *FieldError) bool { return covers(x.Field, field) }) {
				continue
			}
			add(field, "%s", fe.Reason)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		e.File = c.path
		e.Line = c.line(e.Field)
		out[i] = e
	}
	return errors.Join(out...)
}

// covers reports whether an error already reported on field reported
// makes one on field redundant: the same field or one below it, or the
// TLS of a service whose address is wrong (loopback or not is unknown).
func covers(reported, field string) bool {
	if reported == field || strings.HasPrefix(field, reported+".") {
		return true
	}
	svc, ok := strings.CutSuffix(reported, ".address")
	return ok && field == svc+".tls"
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// fileField turns an ir field path into the config file's.
func (c *Config) fileField(f string) string {
	for _, svc := range []string{"authz", "ratelimit"} {
		up := svc + ".upstream."
		switch {
		case strings.HasPrefix(f, up+"tls"):
			return svc + "." + strings.TrimPrefix(f, up)
		case strings.HasPrefix(f, up):
			return svc + ".address"
		}
	}
	if rest, ok := strings.CutPrefix(f, "ratelimit.plans["); ok {
		idx, tail, _ := strings.Cut(rest, "]")
		names := c.planNames()
		if i, err := strconv.Atoi(idx); err == nil && i >= 0 && i < len(names) {
			tail = strings.TrimPrefix(tail, ".name")
			return "plans." + names[i] + tail
		}
	}
	return f
}

// line finds the line of a field, or of its closest present parent.
func (c *Config) line(field string) int {
	for f := field; f != ""; {
		if l, ok := c.lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

func (c *Config) planNames() []string {
	names := make([]string, 0, len(c.Plans))
	for n := range c.Plans {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func validPlanName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// hostPort splits "host:port".
func hostPort(s string) (string, uint32, error) {
	if s == "" {
		return "", 0, errors.New("required (host:port)")
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("must be host:port, got %q", s)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 || h == "" {
		return "", 0, fmt.Errorf("must be host:port with a port 1..65535, got %q", s)
	}
	return h, uint32(port), nil
}
