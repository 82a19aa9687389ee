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

// Validate checks the file's shape (the "host:port" addresses, the
// failure mode), then, if that holds, the gateway model the file describes
// with the model's own rules (ir.Gateway.ValidateStatic, and ir.ValidatePlans
// for plans no ratelimit section uses yet). Every error is named by the
// file's field path and line. The model is not checked while the shape is
// wrong: its rules would only restate the wrong field.
func (c *Config) Validate() error {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if _, _, err := hostPort(c.AuthZ.Address); err != nil {
		add("authz.address", "%v", err)
	}
	for i, r := range c.AuthZ.Replicas {
		if _, _, err := hostPort(r); err != nil {
			add(fmt.Sprintf("authz.replicas[%d]", i), "%v", err)
		}
	}
	if p := c.AuthZ.Public; p != nil {
		if _, _, err := hostPort(p.Address); err != nil {
			add("authz.public.address", "%v", err)
		}
		for i, r := range p.Replicas {
			if _, _, err := hostPort(r); err != nil {
				add(fmt.Sprintf("authz.public.replicas[%d]", i), "%v", err)
			}
		}
	}
	if rl := c.RateLimit; rl != nil {
		if rl.FailureMode != "" && rl.FailureMode != FailOpen && rl.FailureMode != FailClosed {
			add("ratelimit.failure_mode", "must be %q or %q, got %q", FailOpen, FailClosed, rl.FailureMode)
		}
	}
	if t := c.Tracing; t != nil {
		if _, _, err := hostPort(t.Collector); err != nil {
			add("tracing.collector", "%v", err)
		}
		if t.ServerName != "" && t.CAFile == "" {
			add("tracing.server_name", "needs ca_file: without TLS there is no certificate to check")
		}
	}
	c.validateWorkerIdentities(add)
	c.validateTraffic(add)
	if len(errs) == 0 {
		model := c.Gateway().ValidateStatic()
		if c.RateLimit == nil {
			model = errors.Join(model, ir.ValidatePlans(c.PlanList()))
		}
		for _, e := range flatten(model) {
			var fe *ir.FieldError
			if !errors.As(e, &fe) {
				add("", "%v", e)
				continue
			}
			add(c.fileField(fe.Field), "%s", fe.Reason)
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

func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// fileField turns an ir field path into the config file's.
func (c *Config) fileField(f string) string {
	const up = "authz.upstream."
	const pub = "authz.public."
	const col = "tracing.collector."
	switch {
	case f == col+"tls":
		return "tracing.ca_file"
	case strings.HasPrefix(f, col+"tls."):
		return "tracing." + strings.TrimPrefix(f, col+"tls.")
	case strings.HasPrefix(f, col):
		return "tracing.collector"
	case strings.HasPrefix(f, pub+"tls"):
		return f
	case strings.HasPrefix(f, pub+"replicas["):
		// authz.public.replicas[i].address (or .port): the file's
		// authz.public.replicas[i] is "host:port".
		idx, _, _ := strings.Cut(strings.TrimPrefix(f, pub+"replicas["), "]")
		return pub + "replicas[" + idx + "]"
	case strings.HasPrefix(f, pub):
		return pub + "address"
	case strings.HasPrefix(f, up+"tls"):
		return "authz." + strings.TrimPrefix(f, up)
	case strings.HasPrefix(f, up):
		return "authz.address"
	}
	if rest, ok := strings.CutPrefix(f, "ratelimit.plans["); ok {
		idx, tail, _ := strings.Cut(rest, "]")
		names := c.PlanNames()
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

// PlanNames are the plans' names, sorted: the plans clients may be given
// (helix-authz's admin API checks against them).
func (c *Config) PlanNames() []string {
	names := make([]string, 0, len(c.Plans))
	for n := range c.Plans {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
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
