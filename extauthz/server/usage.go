package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/helixflow/helixflow/extauthz/check"
	"github.com/helixflow/helixflow/extauthz/token"
	"github.com/helixflow/helixflow/extauthz/usage"
	counts "github.com/helixflow/helixflow/internal/usage"
)

// DefaultUsageFlushInterval is how often helix-authz flushes its own usage
// counts (requests refused over a plan's limit) into the ledger.
const DefaultUsageFlushInterval = 10 * time.Second

// usagePruneInterval: how often old batch marks and API-key day counts go.
const usagePruneInterval = time.Hour

// usageParts is the usage ledger's share of the server.
type usageParts struct {
	api       *usage.API
	throttles *counts.Aggregator
	reporter  *counts.Reporter
}

// buildUsage builds the ledger (Server.Usage, Server.Ledger), its reports
// on the public mux (the organizations' with the people's API, the
// machine callers' always) and helix-authz's own aggregator and reporter
// of throttled requests, which apply in process.
func (s *Server) buildUsage(cfg Config) error {
	s.Usage = usage.NewStore(s.Store.Pool())
	s.Ledger = usage.NewLedger(s.Usage, s.clientOrg, s.log)
	interval := cfg.UsageFlushInterval
	if interval == 0 {
		interval = DefaultUsageFlushInterval
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	agg := counts.NewAggregator(counts.DefaultMaxKeys)
	rep, err := counts.NewReporter(counts.ReporterConfig{
		ID: counts.NewReporterID("authz", host), Aggregator: agg,
		Sink:     usage.Sink{Store: s.Usage, OrgOf: s.clientOrg},
		Interval: interval, Logger: s.log, Registerer: cfg.Registerer,
	})
	if err != nil {
		return fmt.Errorf("usage reporter: %w", err)
	}
	s.usage = &usageParts{throttles: agg, reporter: rep}
	// Machine callers authenticate as Check does; s.Check is built last,
	// so the handler reaches it through s.
	verifier, err := token.NewVerifier(token.VerifierConfig{Issuer: cfg.Issuer, Audience: cfg.Audience, Keys: s.Keys})
	if err != nil {
		return err
	}
	isPerson := func(ctx context.Context, raw string) bool {
		c, err := verifier.Verify(ctx, raw)
		return err == nil && c.SessionID != ""
	}
	s.usage.api = usage.NewAPI(usage.APIConfig{Store: s.Usage, Members: s.Store, Machines: lateAuth{s},
		IsPersonToken: isPerson, Logger: s.log})
	var people func(http.Handler) http.Handler
	if s.Accounts != nil {
		people = func(h http.Handler) http.Handler { return s.Sessions.Middleware(s.Sessions.Require(h)) }
	}
	s.usage.api.Mount(s.Public, people)
	return nil
}

// clientOrg names a client's organization for the ledger, from the
// in-memory clients ("" for an operator's client or an unknown one).
func (s *Server) clientOrg(clientID string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := s.clients.GetClient(ctx, clientID)
	if err != nil || c == nil {
		return ""
	}
	return c.OrgID
}

// usageAdmin is GET /admin/v1/usage, behind the admin API's
// authentication.
func (s *Server) usageAdmin() http.Handler { return http.HandlerFunc(s.usage.api.AdminUsage) }

// throttles is Check's usage counter.
func (s *Server) throttles() usage.Throttles { return usage.Throttles{Aggregator: s.usage.throttles} }

// runUsage starts the reporter and the pruning; the reporter's last flush
// runs when ctx ends, before Close closes the database.
func (s *Server) runUsage(ctx context.Context) {
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.usage.reporter.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("usage reporter stopped", "error", err)
		}
	}()
	go func() { defer s.wg.Done(); s.Usage.RunPruning(ctx, usagePruneInterval, s.log.Warn) }()
}

// lateAuth is the usage API's authenticator: Server.Check, built after it.
type lateAuth struct{ s *Server }

func (a lateAuth) Authenticate(ctx context.Context, authorization, apiKey string) (*check.Principal, error) {
	return a.s.Check.Authenticate(ctx, authorization, apiKey)
}
