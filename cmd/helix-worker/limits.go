package main

import (
	"flag"
	"fmt"
	"log/slog"

	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/limits"
)

// limitsFlags registers the flags of the per-message plan limits.
func (o *options) limitsFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.limitsAddress, "limits-address", "", "host:port of helix-authz's gRPC listener (its --grpc-listen), asked over mTLS (the --usage-* files) to count each message of a ModelStreamInfer stream or WebSocket connection against the client's plan; empty: stream messages are not counted")
	fs.DurationVar(&o.limitsTimeout, "limits-timeout", limits.DefaultTimeout, "how long a stream message waits for helix-authz's verdict before it is refused (UNAVAILABLE / 503)")
}

func (o *options) checkLimits() error {
	if o.limitsTimeout <= 0 {
		return fmt.Errorf("--limits-timeout %v must be positive", o.limitsTimeout)
	}
	return nil
}

// startLimits connects the per-message limiter when --limits-address is
// set; else it is nil (messages are not counted). stop closes the
// connection.
func startLimits(o *options, log *slog.Logger) (lim infer.MessageLimiter, stop func(), err error) {
	if o.limitsAddress == "" {
		return nil, func() {}, nil
	}
	conn, err := dialAuthz(o, "--limits-address", o.limitsAddress)
	if err != nil {
		return nil, nil, err
	}
	log.Info("counting stream messages against plans", "address", o.limitsAddress, "timeout", o.limitsTimeout)
	return limits.New(conn, o.limitsTimeout), func() { _ = conn.Close() }, nil
}
