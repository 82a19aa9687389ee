package server

import (
	"context"
	"errors"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/xds/config"
)

// loadPlans reads the gateway's plans from its config file: the file
// helix-xds serves Envoy and helix-ratelimit from is their one home, so
// the admin API cannot give a client a plan the gateway does not limit.
func loadPlans(path string) (*admin.Plans, error) {
	if path == "" {
		return nil, errors.New("the gateway config file (--gateway-config) is required: it holds the plans clients are given")
	}
	c, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return admin.NewPlans(c.PlanNames(), c.DefaultPlan()), nil
}

// watchPlans follows the gateway config file as helix-xds does: a new
// good file replaces the plans, a bad one is logged and the last good
// plans stay.
func (s *Server) watchPlans(ctx context.Context) {
	_ = config.Watch(ctx, s.gatewayFile, func(c *config.Config) {
		s.plans.Set(c.PlanNames(), c.DefaultPlan())
		s.log.Info("gateway plans loaded", "plans", c.PlanNames(), "default_plan", c.DefaultPlan())
	}, func(err error) {
		s.log.Warn("gateway config refused; the last good plans stay", "error", err)
	})
}
