package mailtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Client reads a mailpit's mails through its HTTP API
// (/api/v1/search, /api/v1/message/{ID}).
type Client struct {
	URL  string // http://host:port
	HTTP *http.Client
}

// NewClient reads the mailpit at baseURL.
func NewClient(baseURL string) *Client {
	return &Client{URL: strings.TrimRight(baseURL, "/"), HTTP: &http.Client{Timeout: 10 * time.Second}}
}

// Mail is one received mail.
type Mail struct {
	ID      string // mailpit's
	Subject string
	Text    string // the text/plain part
	HTML    string // the text/html part, if any
	To      []string
}

type summary struct {
	ID string
	To []struct{ Address string }
}

// Messages are the mails sent to the address to, newest first.
func (c *Client) Messages(ctx context.Context, to string) ([]Mail, error) {
	q := url.Values{"query": {fmt.Sprintf("to:%q", to)}, "limit": {"200"}}
	var found struct{ Messages []summary }
	if err := c.get(ctx, "/api/v1/search?"+q.Encode(), &found); err != nil {
		return nil, err
	}
	var out []Mail
	for _, s := range found.Messages {
		// The search matches parts of addresses: keep exact recipients.
		if !addressed(s.To, to) {
			continue
		}
		var m struct {
			ID, Subject, Text, HTML string
			To                      []struct{ Address string }
		}
		if err := c.get(ctx, "/api/v1/message/"+url.PathEscape(s.ID), &m); err != nil {
			return nil, err
		}
		mail := Mail{ID: m.ID, Subject: m.Subject, Text: m.Text, HTML: m.HTML}
		for _, a := range m.To {
			mail.To = append(mail.To, a.Address)
		}
		out = append(out, mail)
	}
	return out, nil
}

func addressed(list []struct{ Address string }, to string) bool {
	for _, a := range list {
		if strings.EqualFold(a.Address, to) {
			return true
		}
	}
	return false
}

// WaitFor waits until a mail to the address to whose subject contains
// subjectContains has arrived, and returns the newest such; it gives up
// when ctx ends, saying which subjects did arrive.
func (c *Client) WaitFor(ctx context.Context, to, subjectContains string) (Mail, error) {
	for {
		mails, err := c.Messages(ctx, to)
		if err == nil {
			for _, m := range mails {
				if strings.Contains(m.Subject, subjectContains) {
					return m, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			var subjects []string
			for _, m := range mails {
				subjects = append(subjects, m.Subject)
			}
			return Mail{}, fmt.Errorf("mailtest: no mail to %s with %q in its subject (got %q, last error %v): %w",
				to, subjectContains, subjects, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var urlRE = regexp.MustCompile(`https?://[^\s<>"']+`)

// Link is the first URL in m's text whose path starts with pathPrefix
// ("/verify-email"), or "" when there is none.
func Link(m Mail, pathPrefix string) string {
	for _, raw := range urlRE.FindAllString(m.Text, -1) {
		u, err := url.Parse(raw)
		if err == nil && strings.HasPrefix(u.Path, pathPrefix) {
			return raw
		}
	}
	return ""
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("mailtest: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mailtest: GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("mailtest: GET %s: %w", path, err)
	}
	return nil
}
