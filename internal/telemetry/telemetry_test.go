package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		ok   bool
	}{
		{"off", Config{}, true},
		{"tls", Config{Endpoint: "collector:4317"}, true},
		{"plaintext loopback", Config{Endpoint: "127.0.0.1:4317", PlaintextLoopback: true}, true},
		{"plaintext elsewhere", Config{Endpoint: "collector:4317", PlaintextLoopback: true}, false},
		{"plaintext with a CA", Config{Endpoint: "127.0.0.1:4317", PlaintextLoopback: true, CAFile: "ca.pem"}, false},
		{"ratio over 1", Config{RootSampleRatio: 1.5}, false},
		{"ratio under 0", Config{RootSampleRatio: -0.1}, false},
	} {
		if err := tc.c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestSetupOffIsNoop(t *testing.T) {
	shutdown, err := Setup(context.Background(), "test", Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, span := Tracer("test").Start(context.Background(), "x")
	if span.SpanContext().IsSampled() {
		t.Error("tracing off sampled a span")
	}
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLoggerAddsTraceContext(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "json", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	log.With("component", "x").InfoContext(ctx, "with a span")
	log.Info("without")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %s", len(lines), buf.String())
	}
	var with, without map[string]any
	if err := json.Unmarshal(lines[0], &with); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lines[1], &without); err != nil {
		t.Fatal(err)
	}
	if with[LogTraceID] != tid.String() || with[LogSpanID] != sid.String() || with[LogTraceSampled] != true || with["component"] != "x" {
		t.Errorf("record with a span: %v", with)
	}
	if _, ok := without[LogTraceID]; ok {
		t.Errorf("record without a span has a trace id: %v", without)
	}
	if _, err := NewLogger(&buf, "yaml", slog.LevelInfo); err == nil {
		t.Error("format yaml accepted")
	}
}

func TestLogConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
		want    string // a piece of the line logged at info
	}{
		{"default: JSON at info", nil, "", `"msg":"hello"`},
		{"text", []string{"--log-format=text"}, "", `msg=hello`},
		{"warn drops info", []string{"--log-level=warn"}, "", ""},
		{"unknown format", []string{"--log-format=yaml"}, `--log-format "yaml"`, ""},
		{"unknown level", []string{"--log-level=loud"}, "--log-level", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c LogConfig
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			c.RegisterFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want an error with %q", err, tc.wantErr)
				}
				if _, err := c.NewLogger(&bytes.Buffer{}); err == nil {
					t.Error("NewLogger accepted what Validate refused")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			log, err := c.NewLogger(&buf)
			if err != nil {
				t.Fatal(err)
			}
			log.Info("hello")
			if tc.want == "" && buf.Len() > 0 || !strings.Contains(buf.String(), tc.want) {
				t.Errorf("logged %q, want %q", buf.String(), tc.want)
			}
		})
	}
}

func TestTextLoggerAddsTraceContext(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "text", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	log.WithGroup("g").InfoContext(ctx, "x", "k", "v")
	if !strings.Contains(buf.String(), "trace_sampled=false") {
		t.Errorf("an unsampled trace's line does not say so: %s", buf.String())
	}
	// Added after WithGroup, the ids land in the group: still found by
	// their value, which is what an operator greps for.
	if got := buf.String(); !strings.Contains(got, tid.String()) || !strings.Contains(got, sid.String()) {
		t.Errorf("text line lacks the trace context: %s", got)
	}
}

func TestShutdownHasADeadline(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	start := time.Now()
	Shutdown(func(ctx context.Context) error {
		<-ctx.Done() // a collector that never answers
		return ctx.Err()
	}, 50*time.Millisecond, log)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v with a 50ms deadline", d)
	}
	if !strings.Contains(buf.String(), "trace spans not sent") || !strings.Contains(buf.String(), context.DeadlineExceeded.Error()) {
		t.Errorf("log: %s", buf.String())
	}
	buf.Reset()
	Shutdown(func(context.Context) error { return nil }, time.Second, log)
	if buf.Len() != 0 {
		t.Errorf("a clean shutdown logged %s", buf.String())
	}
	Shutdown(func(context.Context) error { return errors.New("refused") }, time.Second, log)
	if !strings.Contains(buf.String(), "refused") {
		t.Errorf("log: %s", buf.String())
	}
}

// TestSetupOnAndShutdown: with an endpoint (a collector that is not
// there), Setup installs a provider that samples root spans at the ratio
// and follows a sampled parent, and its shutdown returns within the
// deadline though nothing answers.
func TestSetupOnAndShutdown(t *testing.T) {
	shutdown, err := Setup(context.Background(), "test", Config{Endpoint: "127.0.0.1:1", PlaintextLoopback: true, RootSampleRatio: 0})
	if err != nil {
		t.Fatal(err)
	}
	tr := Tracer("test")
	_, root := tr.Start(context.Background(), "root")
	if root.SpanContext().IsSampled() {
		t.Error("root span sampled at ratio 0")
	}
	root.End()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	parent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	_, child := tr.Start(parent, "child")
	if !child.SpanContext().IsSampled() || child.SpanContext().TraceID() != tid {
		t.Errorf("child of a sampled parent: %v", child.SpanContext())
	}
	child.End()
	var buf bytes.Buffer
	start := time.Now()
	Shutdown(shutdown, 500*time.Millisecond, slog.New(slog.NewTextHandler(&buf, nil)))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	if _, err := Setup(context.Background(), "test", Config{Endpoint: "127.0.0.1:4317", CAFile: "/nonexistent/ca.pem"}); err == nil || !strings.Contains(err.Error(), "--otlp-ca-file") {
		t.Errorf("missing CA file: %v", err)
	}
}
