package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/prometheus/client_golang/prometheus"
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
	if o.usageAddress == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(o.usageAddress); err != nil {
		return fmt.Errorf("--usage-address %q: %w", o.usageAddress, err)
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
		return errors.New("--usage-address needs --usage-ca-file, --usage-cert-file and --usage-key-file (or the --xds-* ones): helix-authz admits workers by their client certificate")
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
	tlsCfg, err := registration.LoadClientTLS(o.usageCAFile, o.usageCertFile, o.usageKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--usage-ca-file/--usage-cert-file/--usage-key-file: %w", err)
	}
	// Empty: gRPC checks the certificate for the host of --usage-address.
	tlsCfg.ServerName = o.usageServerName
	conn, err := grpc.NewClient(o.usageAddress, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, nil, fmt.Errorf("--usage-address: %w", err)
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
