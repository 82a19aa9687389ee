package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/gdpr"
)

// AuditQuery filters the audit endpoints; zero fields select everything.
type AuditQuery struct {
	Actor, Target, Action string
	Since, Until          time.Time
	Limit                 int   // list only
	Before                int64 // list only: the next page after this seq
}

func (q AuditQuery) encode() string {
	v := url.Values{}
	for k, s := range map[string]string{"actor": q.Actor, "target": q.Target, "action": q.Action} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Before > 0 {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// ListAudit lists audit rows, newest first.
func (c *Client) ListAudit(ctx context.Context, q AuditQuery) ([]audit.Row, error) {
	var v []audit.Row
	return v, c.do(ctx, http.MethodGet, "/admin/v1/audit"+q.encode(), nil, &v)
}

// VerifyAudit verifies the audit trail's hash chain.
func (c *Client) VerifyAudit(ctx context.Context) (*audit.Verification, error) {
	var v audit.Verification
	return &v, c.do(ctx, http.MethodGet, "/admin/v1/audit/verify", nil, &v)
}

// ExportAudit copies the audit rows q selects (Limit and Before aside) to
// w as JSON Lines, oldest first.
func (c *Client) ExportAudit(ctx context.Context, q AuditQuery, w io.Writer) error {
	q.Limit, q.Before = 0, 0
	return c.do(ctx, http.MethodGet, "/admin/v1/audit/export"+q.encode(), nil, w)
}

// ExportUser returns everything helix-authz holds about a person.
func (c *Client) ExportUser(ctx context.Context, id string) (json.RawMessage, error) {
	var v json.RawMessage
	return v, c.do(ctx, http.MethodGet, "/admin/v1/users/"+url.PathEscape(id)+"/export", nil, &v)
}

// EraseUser erases a person (GDPR): see docs/privacy.md.
func (c *Client) EraseUser(ctx context.Context, id string) (*gdpr.Erasure, error) {
	var v gdpr.Erasure
	return &v, c.do(ctx, http.MethodPost, "/admin/v1/users/"+url.PathEscape(id)+"/erase", nil, &v)
}
