package telemetry

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute names of a record's trace context. A request the gateway
// did not sample still has a trace id (the same in every process's lines
// about it, so a search for it finds them all), but no trace in the
// collector: trace_sampled says which.
const (
	LogTraceID      = "trace_id"
	LogSpanID       = "span_id"
	LogTraceSampled = "trace_sampled"
)

// LogConfig is every daemon's --log-format and --log-level.
type LogConfig struct {
	// Format is "json" (the default: one object a line, for a log
	// collector) or "text" (slog's key=value, for a terminal).
	Format string
	// Level is debug, info, warn or error.
	Level string
}

// RegisterFlags adds --log-format and --log-level, the same in every
// daemon.
func (c *LogConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Format, "log-format", "json", "json (one object a line, with trace_id and span_id on a traced request's lines) or text")
	fs.StringVar(&c.Level, "log-level", "info", "debug, info, warn or error")
}

// Validate checks the flags' values, so that a daemon refuses a bad one
// with the other flag errors.
func (c LogConfig) Validate() error {
	if c.Format != "json" && c.Format != "text" {
		return fmt.Errorf("--log-format %q: want json or text", c.Format)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	return nil
}

// NewLogger is the logger the flags ask for, writing to w.
func (c LogConfig) NewLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return NewLogger(w, c.Format, level)
}

// NewLogger is every daemon's logger: JSON (format "json") or text on w,
// at level, with trace_id and span_id added to each record logged with a
// context that carries a span (logger.InfoContext(ctx, ...)), so that a log
// line leads to its trace and back.
func NewLogger(w io.Writer, format string, level slog.Leveler) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
	return slog.New(TraceHandler{h}), nil
}

// TraceHandler adds the trace and span ids of the record's context, and
// whether that trace is sampled, to every record it passes on.
type TraceHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h TraceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String(LogTraceID, sc.TraceID().String()), slog.String(LogSpanID, sc.SpanID().String()),
			slog.Bool(LogTraceSampled, sc.IsSampled()))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h TraceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return TraceHandler{h.Handler.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h TraceHandler) WithGroup(name string) slog.Handler {
	return TraceHandler{h.Handler.WithGroup(name)}
}
