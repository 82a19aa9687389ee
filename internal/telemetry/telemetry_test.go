package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

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
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
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
	if with[LogTraceID] != tid.String() || with[LogSpanID] != sid.String() || with["component"] != "x" {
		t.Errorf("record with a span: %v", with)
	}
	if _, ok := without[LogTraceID]; ok {
		t.Errorf("record without a span has a trace id: %v", without)
	}
	if _, err := NewLogger(&buf, "yaml", slog.LevelInfo); err == nil {
		t.Error("format yaml accepted")
	}
}
