package admin

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/helixflow/helixflow/extauthz/rollouts"
)

// StartRollout asks for a rollout; the answer is the rollout inserted
// (running, step -1: helix-xds applies the first step).
func (c *Client) StartRollout(ctx context.Context, req rollouts.Request) (*RolloutView, error) {
	var v RolloutView
	return &v, c.do(ctx, http.MethodPost, "/admin/v1/rollouts", req, &v)
}

// ListRollouts lists up to limit rollouts (0: the server's default),
// newest first, of model ("" every model).
func (c *Client) ListRollouts(ctx context.Context, model string, limit int) ([]RolloutView, error) {
	q := url.Values{}
	if model != "" {
		q.Set("model", model)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/admin/v1/rollouts"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var v []RolloutView
	return v, c.do(ctx, http.MethodGet, path, nil, &v)
}

// GetRollout reads one rollout.
func (c *Client) GetRollout(ctx context.Context, id int64) (*RolloutView, error) {
	var v RolloutView
	return &v, c.do(ctx, http.MethodGet, "/admin/v1/rollouts/"+strconv.FormatInt(id, 10), nil, &v)
}

// RolloutAction pauses, resumes or aborts rollout id (action "pause",
// "resume" or "abort").
func (c *Client) RolloutAction(ctx context.Context, id int64, action string) (*RolloutView, error) {
	var v RolloutView
	return &v, c.do(ctx, http.MethodPost, "/admin/v1/rollouts/"+strconv.FormatInt(id, 10)+"/"+url.PathEscape(action), nil, &v)
}

// ReleaseRollout ends the pin of model's finished rollout.
func (c *Client) ReleaseRollout(ctx context.Context, model string) (*RolloutView, error) {
	var v RolloutView
	return &v, c.do(ctx, http.MethodPost, "/admin/v1/models/"+url.PathEscape(model)+"/rollout/release", nil, &v)
}
