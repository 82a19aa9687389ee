package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// jaeger reads traces through Jaeger's HTTP query API (/api/traces, the
// JSON the UI reads; Jaeger v2 serves it on its UI port).
type jaeger struct {
	base string // http://127.0.0.1:PORT
	hc   *http.Client
}

// jTrace is one trace of /api/traces.
type jTrace struct {
	TraceID   string              `json:"traceID"`
	Spans     []jSpan             `json:"spans"`
	Processes map[string]jProcess `json:"processes"`
}

type jProcess struct {
	ServiceName string `json:"serviceName"`
}

type jSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64  `json:"startTime"` // microseconds since the epoch
	Duration  int64  `json:"duration"`  // microseconds
	Tags      []jTag `json:"tags"`
	ProcessID string `json:"processID"`
}

type jTag struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// tracesSince lists the traces with a span of service that started at or
// after since (at most 100).
func (j jaeger) tracesSince(ctx context.Context, service string, since time.Time) ([]jTrace, error) {
	q := url.Values{
		"service": {service},
		"start":   {strconv.FormatInt(since.UnixMicro(), 10)},
		"end":     {strconv.FormatInt(time.Now().Add(time.Minute).UnixMicro(), 10)},
		"limit":   {"100"},
	}
	return j.get(ctx, "/api/traces?"+q.Encode())
}

// trace fetches one trace by its id (32 hex digits).
func (j jaeger) trace(ctx context.Context, id string) (jTrace, error) {
	ts, err := j.get(ctx, "/api/traces/"+id)
	if err != nil {
		return jTrace{}, err
	}
	if len(ts) != 1 {
		return jTrace{}, fmt.Errorf("trace %s: %d traces in the answer", id, len(ts))
	}
	return ts[0], nil
}

func (j jaeger) get(ctx context.Context, path string) ([]jTrace, error) {
	hc := j.hc
	if hc == nil {
		hc = http.DefaultClient
	}
	b, err := httpGet(ctx, hc, j.base+path)
	if err != nil {
		return nil, fmt.Errorf("jaeger %s: %w (%.200s)", path, err, b)
	}
	var r struct {
		Data   []jTrace `json:"data"`
		Errors []struct {
			Msg string `json:"msg"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("jaeger %s: %w", path, err)
	}
	if len(r.Errors) > 0 {
		return nil, fmt.Errorf("jaeger %s: %s", path, r.Errors[0].Msg)
	}
	return r.Data, nil
}

// service is the span's process's service.name.
func (tr jTrace) service(s jSpan) string { return tr.Processes[s.ProcessID].ServiceName }

// byID indexes the trace's spans.
func (tr jTrace) byID() map[string]jSpan {
	m := make(map[string]jSpan, len(tr.Spans))
	for _, s := range tr.Spans {
		m[s.SpanID] = s
	}
	return m
}

// parent is the span's CHILD_OF parent in this trace ("" for a root).
func (s jSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" && r.TraceID == s.TraceID {
			return r.SpanID
		}
	}
	return ""
}

// tag is the span's tag key as text ("" and false when absent); bool and
// number tags print as Go does ("false", "5").
func (s jSpan) tag(key string) (string, bool) {
	for _, t := range s.Tags {
		if t.Key == key {
			if f, ok := t.Value.(float64); ok {
				return strconv.FormatFloat(f, 'f', -1, 64), true
			}
			return fmt.Sprint(t.Value), true
		}
	}
	return "", false
}

// find returns the spans of service whose operation name contains op.
func (tr jTrace) find(service, op string) []jSpan {
	var out []jSpan
	for _, s := range tr.Spans {
		if tr.service(s) == service && strings.Contains(s.OperationName, op) {
			out = append(out, s)
		}
	}
	return out
}

// ancestors are the span's parents, nearest first; a reference to a span
// missing from the trace ends the chain with an error.
func (tr jTrace) ancestors(s jSpan) ([]jSpan, error) {
	ids := tr.byID()
	var out []jSpan
	for p := s.parent(); p != ""; {
		a, ok := ids[p]
		if !ok {
			return out, fmt.Errorf("span %s (%s) has parent %s, not in the trace", s.OperationName, s.SpanID, p)
		}
		out = append(out, a)
		if len(out) > len(ids) {
			return out, fmt.Errorf("span %s: a cycle of parents", s.OperationName)
		}
		p = a.parent()
	}
	return out, nil
}

// nearest is the span's nearest ancestor from service.
func (tr jTrace) nearest(s jSpan, service string) (jSpan, error) {
	as, err := tr.ancestors(s)
	if err != nil {
		return jSpan{}, err
	}
	for _, a := range as {
		if tr.service(a) == service {
			return a, nil
		}
	}
	return jSpan{}, fmt.Errorf("span %s (%s) has no ancestor from %s", s.OperationName, tr.service(s), service)
}

// roots are the spans without a parent in the trace.
func (tr jTrace) roots() []jSpan {
	var out []jSpan
	for _, s := range tr.Spans {
		if s.parent() == "" {
			out = append(out, s)
		}
	}
	return out
}

// services lists the trace's services, sorted.
func (tr jTrace) services() []string {
	var out []string
	for _, s := range tr.Spans {
		if n := tr.service(s); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// String is the trace as a tree, for failure messages.
func (tr jTrace) String() string {
	children := map[string][]jSpan{}
	for _, s := range tr.Spans {
		children[s.parent()] = append(children[s.parent()], s)
	}
	ids := tr.byID()
	var b strings.Builder
	fmt.Fprintf(&b, "trace %s (%d spans):\n", tr.TraceID, len(tr.Spans))
	var walk func(s jSpan, depth int)
	walk = func(s jSpan, depth int) {
		var tags []string
		for _, t := range s.Tags {
			if strings.HasPrefix(t.Key, "helix.") {
				tags = append(tags, fmt.Sprintf("%s=%v", t.Key, t.Value))
			}
		}
		fmt.Fprintf(&b, "%s%s: %s %v\n", strings.Repeat("  ", depth+1), tr.service(s), s.OperationName, tags)
		for _, c := range children[s.SpanID] {
			walk(c, depth+1)
		}
	}
	for _, s := range tr.Spans {
		if p := s.parent(); p == "" || ids[p].SpanID == "" {
			walk(s, 0)
		}
	}
	return b.String()
}
