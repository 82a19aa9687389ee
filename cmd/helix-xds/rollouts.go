package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/internal/secretfile"
	"github.com/helixflow/helixflow/xds/rollout"
)

// databaseURLEnv holds the database URL when it carries a password (as
// for helix-authz).
const databaseURLEnv = "HELIX_DATABASE_URL"

// rolloutFlags adds the rollout controller's flags (docs/rollouts.md).
func rolloutFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.databaseURL, "database-url", "", "helix-authz's Postgres, for rollouts, as a URL without a password (default: env "+databaseURLEnv+", which may hold one); neither: no rollouts (the config's traffic policies still apply)")
	fs.StringVar(&o.prometheusURL, "prometheus-url", "", "Prometheus that scrapes the gateway's Envoys (http://host:9090), for rollouts' SLO evaluations; empty: a rollout's due step holds, saying so")
}

// checkRolloutFlags refuses a password on the command line and a
// Prometheus without rollouts to evaluate.
func checkRolloutFlags(o *options) error {
	if secretfile.URLHoldsPassword(o.databaseURL) {
		return errors.New("--database-url holds a password, which the command line shows to every user of the machine; put the URL in " + databaseURLEnv)
	}
	if o.databaseURL == "" {
		o.databaseURL = os.Getenv(databaseURLEnv)
	}
	if o.prometheusURL == "" {
		return nil
	}
	if o.databaseURL == "" {
		return errors.New("--prometheus-url is for rollouts, which need --database-url or " + databaseURLEnv)
	}
	u, err := url.Parse(o.prometheusURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--prometheus-url %q: want http(s)://host[:port][/path]", o.prometheusURL)
	}
	return nil
}

// openRollouts starts nothing but returns the rollout controller over
// --database-url, or nil without a database. The pool connects lazily: a
// database down at start delays rollouts, not the gateway.
func openRollouts(o *options, pub rollout.Publisher, reg prometheus.Registerer, log *slog.Logger) (*rollout.Controller, func(), error) {
	if o.databaseURL == "" {
		log.Info("no --database-url or " + databaseURLEnv + ": rollouts off")
		return nil, func() {}, nil
	}
	pcfg, err := pgxpool.ParseConfig(o.databaseURL)
	if err != nil {
		// The parse error may quote the URL, password included.
		return nil, nil, errors.New("--database-url (or " + databaseURLEnv + "): not a valid Postgres URL")
	}
	pcfg.MaxConns = 4
	pcfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--database-url: %w", err)
	}
	// A failed audit record is logged by the auditor; its counter
	// (helix_authz_audit_write_failures_total) is helix-authz's.
	auditor, err := audit.New(audit.Config{Pool: pool, Logger: log})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	cfg := rollout.Config{Pool: pool, Publisher: pub, Auditor: auditor, Registerer: reg, Logger: log}
	if o.prometheusURL != "" {
		p, err := rollout.NewPrometheus(o.prometheusURL)
		if err != nil {
			pool.Close()
			return nil, nil, fmt.Errorf("--prometheus-url: %w", err)
		}
		cfg.Evaluator = p
	}
	ctl, err := rollout.New(cfg)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	log.Info("rollouts on", "prometheus", redacted(o.prometheusURL))
	return ctl, pool.Close, nil
}

// redacted is a URL fit for a log: no password.
func redacted(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Redacted()
}
