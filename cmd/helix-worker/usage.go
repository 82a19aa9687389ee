package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/workers/registration"
)

// checkUsage validates the --usage-* flags and fills the TLS files from
// the --xds-* ones: the worker's registration certificate carries the
// worker identity the ledger admits.
func (o *options) checkUsage() error {
	if o.usageFlushInterval <= 0 {
		return fmt.Errorf("--usage-flush-interval %v must be positive", o.usageFlushInterval)
	}
	if o.usageMaxKeys < 1 {
		return fmt.Errorf("--usage-max-keys %d must be at least 1", o.usageMaxKeys)
	}
	if err := o.checkLimits(); err != nil {
		return err
	}
	// The Limits service is on the same helix-authz listener, reached with
	// the same files.
	if o.usageAddress == "" && o.limitsAddress == "" {
		return nil
	}
	for _, a := range []struct{ flag, addr string }{{"--usage-address", o.usageAddress}, {"--limits-address", o.limitsAddress}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: %w", a.flag, a.addr, err)
		}
	}
	for _, f := range []struct {
		dst  *string
		from string
	}{
		{&o.usageCAFile, o.xdsCAFile}, {&o.usageCertFile, o.xdsCertFile}, {&o.usageKeyFile, o.xdsKeyFile},
	} {
		if *f.dst == "" {
			*f.dst = f.from
		}
	}
	if o.usageCAFile == "" || o.usageCertFile == "" || o.usageKeyFile == "" {
		flag := "--usage-address"
		if o.usageAddress == "" {
			flag = "--limits-address"
		}
		return fmt.Errorf("%s needs --usage-ca-file, --usage-cert-file and --usage-key-file (or the --xds-* ones): helix-authz admits workers by their client certificate", flag)
	}
	return nil
}

// startUsage starts counting usage and reporting it to helix-authz when
// --usage-address is set; else counts is nil (the front ends count
// nothing). stop ends the reporter after a last flush (at most 5s).
func startUsage(ctx context.Context, o *options, reg prometheus.Registerer, log *slog.Logger) (counts *usage.Aggregator, stop func(), err error) {
	if o.usageAddress == "" {
		return nil, func() {}, nil
	}
	conn, err := dialAuthz(o, "--usage-address", o.usageAddress)
	if err != nil {
		return nil, nil, err
	}
	name := o.workerID
	if name == "" {
		name, _ = os.Hostname()
		name += fmt.Sprintf(":%d", o.grpcPort)
	}
	counts = usage.NewAggregator(o.usageMaxKeys)
	rep, err := usage.NewReporter(usage.ReporterConfig{
		ID: usage.NewReporterID("worker", name), Aggregator: counts, Sink: usage.NewGRPCSink(conn),
		Interval: o.usageFlushInterval, Logger: log, Registerer: reg,
	})
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	// Its own context: the caller's ends at the signal, before the
	// servers drain, and the counts of draining requests are still due.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rep.Run(runCtx)
	}()
	log.Info("reporting usage", "address", o.usageAddress, "reporter", rep.ID(), "flush_interval", o.usageFlushInterval)
	return counts, func() {
		cancel()
		<-done
		_ = conn.Close()
	}, nil
}

// dialAuthz connects to helix-authz's gRPC listener at address (named by
// flag in errors) with the --usage-* TLS files: the usage Ledger and the
// Limits service both admit workers by their certificate.
func dialAuthz(o *options, flag, address string) (*grpc.ClientConn, error) {
	tlsCfg, err := registration.LoadClientTLS(o.usageCAFile, o.usageCertFile, o.usageKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--usage-ca-file/--usage-cert-file/--usage-key-file: %w", err)
	}
	// Empty: gRPC checks the certificate for the host of the address.
	tlsCfg.ServerName = o.usageServerName
	// The trace context goes along: a stream message's Spend shows in its
	// request's trace, and helix-authz's side of it below.
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return conn, nil
}
