// Package httpserver holds the one set of limits every HelixFlow HTTP
// server runs with (helix-xds, helix-authz, helix-worker). A server that
// needs another limit overrides that field where it is built and says why
// there.
package httpserver

import (
	"log/slog"
	"net/http"
	"time"
)

// The limits, each with its reason.
const (
	// ReadHeaderTimeout: a client that trickles its request headers
	// (slowloris) holds a connection and a goroutine; ten seconds is far
	// more than any real client needs to send them.
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request, body included: the
	// control-plane, token, admin and metrics endpoints take small bodies,
	// so a slow upload is an attack or a broken client.
	ReadTimeout = 30 * time.Second
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its response, so that a client that stops reading cannot hold a
	// handler forever; these handlers answer in milliseconds (a Prometheus
	// scrape times out after 10 s by default).
	WriteTimeout = 30 * time.Second
	// IdleTimeout closes keep-alive connections left unused: longer than
	// the one-minute scrape and probe intervals, so those reuse their
	// connection, short enough that clients gone away do not pile up.
	IdleTimeout = 2 * time.Minute
	// MaxHeaderBytes bounds the memory one request's headers take (Go's
	// default is 1 MiB); 64 KiB is above Envoy's own default limit on the
	// headers it forwards (60 KiB), so nothing Envoy passes is refused, and
	// far above a bearer token with the x-helix-* and trace headers.
	MaxHeaderBytes = 64 << 10
)

// New returns a server for h with the limits above; its own errors (failed
// TLS handshakes among them) go to log as warnings.
func New(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
