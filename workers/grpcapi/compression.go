package grpcapi

import (
	"errors"
	"io"

	"google.golang.org/grpc/encoding"
	// Imported for its init, so that ours runs after it and wins.
	_ "google.golang.org/grpc/encoding/gzip"
)

// The worker accepts no compressed messages: one could inflate far beyond
// what it cost to send. gRPC refuses a compressed message only when no
// decompressor is registered under its encoding, but the OTLP trace
// exporter (internal/telemetry) imports grpc/encoding/gzip, which
// registers gzip in every process that can export spans. So the worker
// registers a gzip that compresses (for the exporter's sake, should it ask)
// and refuses to decompress: the call fails before one byte is inflated.
func init() { encoding.RegisterCompressor(refusingGzip{encoding.GetCompressor("gzip")}) }

// errCompressed is what a compressed message gets, wrapped by gRPC in an
// INTERNAL status ("grpc: failed to decompress the message: ...").
var errCompressed = errors.New("helix-worker does not accept gzip-compressed messages; send them uncompressed")

type refusingGzip struct{ gzip encoding.Compressor }

func (c refusingGzip) Compress(w io.Writer) (io.WriteCloser, error) { return c.gzip.Compress(w) }

func (refusingGzip) Decompress(io.Reader) (io.Reader, error) { return nil, errCompressed }

func (refusingGzip) Name() string { return "gzip" }
