package helixflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Model is one model of the catalogue (GET /api/v1/models).
type Model struct {
	Name string `json:"name"`
	// Versions served by at least one ready worker.
	Versions     []string `json:"versions"`
	Ready        bool     `json:"ready"`
	Workers      uint32   `json:"workers"`
	ReadyWorkers uint32   `json:"ready_workers"`
	// Platform, MaxBatchSize, Inputs and Outputs as a worker reported
	// them; empty where the gateway's source carries none.
	Platform     string         `json:"platform"`
	MaxBatchSize int32          `json:"max_batch_size"`
	Inputs       []TensorInfo   `json:"inputs"`
	Outputs      []TensorInfo   `json:"outputs"`
	Config       map[string]any `json:"config"`
}

// TensorInfo is a model's input or output; Shape leaves out the batch
// dimension and has -1 for a variable one.
type TensorInfo struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

// UsageQuery narrows GET /api/v1/usage. Zero fields are left to the server
// (the last 7 days, per hour).
type UsageQuery struct {
	From, To    time.Time
	Granularity string // "hour" or "day"
	Model       string
}

// UsageReport is the calling client's usage.
type UsageReport struct {
	Granularity string      `json:"granularity"`
	From        time.Time   `json:"from"`
	To          time.Time   `json:"to"`
	Rows        []UsageRow  `json:"rows"`
	Totals      UsageTotals `json:"totals"`
}

// UsageTotals sums a report's rows. The latency quantiles are nil when no
// request was timed.
type UsageTotals struct {
	Requests       int64    `json:"requests"`
	Inferences     int64    `json:"inferences"`
	Errors         int64    `json:"errors"`
	Throttled      int64    `json:"throttled"`
	ComputeSeconds float64  `json:"compute_seconds"`
	LatencyP50Ms   *float64 `json:"latency_p50_ms"`
	LatencyP99Ms   *float64 `json:"latency_p99_ms"`
}

// UsageRow is one hour (or day), client and model.
type UsageRow struct {
	Start    time.Time `json:"start"`
	ClientID string    `json:"client_id"`
	Model    string    `json:"model"`
	UsageTotals
}

// APIError is a REST error answer: the HTTP status and the body's
// {"error", "error_description"}.
type APIError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("helixflow: HTTP %d %s: %s", e.Status, e.Code, e.Description)
}

// ErrNotFound is matched (errors.Is) by a 404 APIError: an unknown model,
// or one the credentials do not reach.
var ErrNotFound = errors.New("helixflow: not found")

// Is makes errors.Is(err, ErrNotFound) true for a 404.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// Models lists the catalogue's models the credentials reach, by name.
func (c *Client) Models(ctx context.Context) ([]Model, error) {
	var out struct {
		Models []Model `json:"models"`
	}
	if err := c.getJSON(ctx, "/api/v1/models", nil, &out); err != nil {
		return nil, err
	}
	return out.Models, nil
}

// Model is one model of the catalogue; an error matching ErrNotFound when
// no worker serves it or the credentials do not reach it.
func (c *Client) Model(ctx context.Context, name string) (*Model, error) {
	var m Model
	if err := c.getJSON(ctx, "/api/v1/models/"+url.PathEscape(name), nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Usage is the calling client's own usage report (GET /api/v1/usage). It
// spends none of the plan's quota.
func (c *Client) Usage(ctx context.Context, q UsageQuery) (*UsageReport, error) {
	v := url.Values{}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339))
	}
	if q.Granularity != "" {
		v.Set("granularity", q.Granularity)
	}
	if q.Model != "" {
		v.Set("model", q.Model)
	}
	var r UsageReport
	if err := c.getJSON(ctx, "/api/v1/usage", v, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// getJSON GETs path with the credentials' headers, retrying 429 and 503 as
// the retry policy says, and decodes a 200's JSON into out.
func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	u := c.restURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	for attempt := 0; ; attempt++ {
		retryAfter, err := c.getOnce(ctx, u, out)
		var ae *APIError
		if err == nil || !errors.As(err, &ae) || attempt+1 >= c.retry.MaxAttempts ||
			(ae.Status != http.StatusTooManyRequests && ae.Status != http.StatusServiceUnavailable) {
			return err
		}
		if ae.Status != http.StatusTooManyRequests {
			retryAfter = 0
		}
		if !sleep(ctx, c.retry.backoff(attempt, retryAfter)) {
			return err
		}
	}
}

// getOnce makes one GET; on a 429 it also answers the wait the gateway
// asked for.
func (c *Client) getOnce(ctx context.Context, u string, out any) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("helixflow: GET %s: %w", u, err)
	}
	md, err := c.creds.GetRequestMetadata(ctx, c.restURL)
	if err != nil {
		return 0, fmt.Errorf("helixflow: GET %s: credentials: %w", u, err)
	}
	for k, v := range md {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("helixflow: GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, fmt.Errorf("helixflow: GET %s: read answer: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		ae := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(body, ae) != nil || ae.Code == "" {
			ae.Code, ae.Description = http.StatusText(resp.StatusCode), string(body)
		}
		var wait time.Duration
		for _, h := range []string{RateLimitResetHeader, "Retry-After"} {
			if d, ok := parseSeconds(resp.Header.Get(h)); ok {
				wait = d
				break
			}
		}
		return wait, fmt.Errorf("GET %s: %w", u, ae)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return 0, fmt.Errorf("helixflow: GET %s: decode answer: %w", u, err)
	}
	return 0, nil
}
