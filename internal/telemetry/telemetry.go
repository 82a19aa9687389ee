// Package telemetry is what every HelixFlow daemon shares for traces and
// logs: spans exported over OTLP/gRPC to a collector (Jaeger locally, any
// OpenTelemetry Collector in production), W3C trace context in and out, and
// logs that carry the trace and span ids of the request they are about.
//
// Sampling is decided once, at the gateway: Envoy starts the trace (the
// gateway config's tracing.sampling) and every process below follows the
// parent's decision. A request that reaches a daemon without a trace
// context (a direct call, a health check) starts a root span sampled at
// Config.RootSampleRatio, 0 unless asked.
package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/internal/netaddr"
	"github.com/helixflow/helixflow/internal/version"
)

// Config says where spans go. The zero value (no Endpoint) turns tracing
// off: Setup installs a no-op provider, and the code that makes spans costs
// next to nothing.
type Config struct {
	// Endpoint is the collector's OTLP/gRPC address, host:port.
	Endpoint string
	// CAFile verifies the collector's TLS certificate (empty: the system's
	// roots).
	CAFile string
	// PlaintextLoopback sends spans without TLS, allowed only when
	// Endpoint is a loopback address (as every --plaintext-loopback).
	PlaintextLoopback bool
	// RootSampleRatio samples requests that arrive without a trace
	// context; those that carry one follow their parent's decision.
	RootSampleRatio float64
}

// RegisterFlags adds the tracing flags, the same in every daemon:
// --otlp-endpoint, --otlp-ca-file, --otlp-plaintext-loopback,
// --trace-root-sample-ratio.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Endpoint, "otlp-endpoint", "", "OTLP/gRPC collector (host:port) to send trace spans to; empty: tracing off")
	fs.StringVar(&c.CAFile, "otlp-ca-file", "", "CA that signed the collector's TLS certificate (default: the system's roots)")
	fs.BoolVar(&c.PlaintextLoopback, "otlp-plaintext-loopback", false, "send spans without TLS (only to a loopback --otlp-endpoint)")
	fs.Float64Var(&c.RootSampleRatio, "trace-root-sample-ratio", 0, "sample this share (0 to 1) of requests that arrive without a trace context; others follow the caller's decision")
}

// Validate checks the flags' values together.
func (c Config) Validate() error {
	if c.RootSampleRatio < 0 || c.RootSampleRatio > 1 {
		return fmt.Errorf("--trace-root-sample-ratio %v: want 0 to 1", c.RootSampleRatio)
	}
	if c.Endpoint == "" {
		return nil
	}
	if c.PlaintextLoopback && !netaddr.Loopback(c.Endpoint) {
		return fmt.Errorf("--otlp-plaintext-loopback: %q is not a loopback address", c.Endpoint)
	}
	if c.PlaintextLoopback && c.CAFile != "" {
		return errors.New("--otlp-plaintext-loopback and --otlp-ca-file: choose one")
	}
	return nil
}

// Setup installs the global tracer provider and the W3C propagators
// (tracecontext and baggage) for service, and returns the function that
// flushes and stops them (call it on shutdown, with a deadline).
func Setup(ctx context.Context, service string, c Config) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Endpoint == "" {
		otel.SetTracerProvider(noop.NewTracerProvider())
		return func(context.Context) error { return nil }, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(c.Endpoint)}
	if c.PlaintextLoopback {
		opts = append(opts, otlptracegrpc.WithInsecure())
	} else {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("--otlp-ca-file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--otlp-ca-file %s: no PEM certificate", c.CAFile)
			}
		}
		opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tc)))
	}
	// The exporter connects lazily and retries on its own: a collector that
	// is down loses spans, never requests.
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	// Schemaless: resource.Default() carries the SDK's own semconv schema,
	// and merging two different schema URLs is an error.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(service), semconv.ServiceVersion(version.Version)))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.RootSampleRatio))),
	)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// FlushTimeout is how long a stopping daemon waits for its last spans to
// reach the collector: long enough for one export, short enough that a
// collector that is down does not hold up a restart.
const FlushTimeout = 5 * time.Second

// Shutdown calls the shutdown function Setup returned with a deadline of
// timeout, after the daemon's servers have drained (so that the spans of
// the requests they finished go out too). Spans not sent by then are lost,
// which goes to log.
func Shutdown(shutdown func(context.Context) error, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		log.Warn("trace spans not sent to the collector", "error", err)
	}
}

// Enabled reports whether Setup installed an exporting tracer provider
// (--otlp-endpoint set; tests install their own SDK provider). Servers ask
// it before adding per-request tracing work that would cost even with a
// no-op tracer (a gRPC stats handler, extracting trace context): off, it
// is one atomic load.
func Enabled() bool {
	_, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	return ok
}

// Tracer is the tracer of a package (name: its import path).
func Tracer(name string) trace.Tracer { return otel.Tracer(name) }
