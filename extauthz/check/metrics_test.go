package check

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestClientRequestsCounter: every check lands in exactly one series of
// helix_authz_client_requests_total, with the labels the dashboards group
// by; unauthenticated callers name no label value.
func TestClientRequestsCounter(t *testing.T) {
	e := newEnv(t)
	all := e.mint(t, claims([]string{"models:infer", "models:read"}, []string{"*"}))
	onlyB := e.mint(t, claims([]string{"models:infer"}, []string{"b"}))
	for _, c := range []struct {
		name   string
		path   string
		hdr    map[string]string
		status int
		model  string // x-helix-model on OK
		labels [4]string
	}{
		{"inference allowed", "/v2/models/a/infer", bearerHdr(all), 200, "a", [4]string{"client-a", "a", kindInfer, resultOK}},
		{"read allowed", "/v2/models/a/ready", bearerHdr(all), 200, "a", [4]string{"client-a", "a", kindRead, resultOK}},
		{"model not in the list", "/v2/models/a/infer", bearerHdr(onlyB), 403, "", [4]string{"client-a", "a", kindInfer, resultDenied}},
		{"no credential", "/v2/models/secret-model/infer", nil, 401, "", [4]string{labelNone, labelNone, kindUnknown, resultDenied}},
		{"unknown route", "/v3/x", bearerHdr(all), 403, "", [4]string{"client-a", labelNone, kindUnknown, resultDenied}},
		{"server health", "/v2/health/ready", bearerHdr(all), 200, "", [4]string{"client-a", labelNone, kindRead, resultOK}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := testutil.ToFloat64(e.svc.metrics.requests.WithLabelValues(c.labels[:]...))
			e.check(t, restReq("POST", c.path, c.hdr), expect{status: c.status, model: c.model})
			if got := testutil.ToFloat64(e.svc.metrics.requests.WithLabelValues(c.labels[:]...)); got != before+1 {
				t.Fatalf("requests%v = %v, want %v", c.labels, got, before+1)
			}
		})
	}
	if bad := testutil.ToFloat64(e.svc.metrics.requests.WithLabelValues(labelNone, "secret-model", kindInfer, resultDenied)); bad != 0 {
		t.Fatalf("an unauthenticated request named a model label: %v", bad)
	}
}

// TestLabelLimits: past the limit, new clients and models become _other
// while known ones keep their series.
func TestLabelLimits(t *testing.T) {
	e := newEnv(t)
	svc := New(Config{Verifier: e.svc.verifier, Revocations: e.revs, Clients: e.clis, Metrics: e.reg, MaxModelLabels: 2, MaxClientLabels: 1})
	e.svc = svc
	tok := e.mint(t, claims([]string{"models:infer"}, []string{"*"}))
	otherClient := claims([]string{"models:infer"}, []string{"*"})
	otherClient.ClientID, otherClient.Subject = "client-b", "client-b"
	tokB := e.mint(t, otherClient)
	for _, m := range []string{"m1", "m2", "m3", "m4", "m1"} {
		e.check(t, restReq("POST", "/v2/models/"+m+"/infer", bearerHdr(tok)), expect{status: 200, model: m})
	}
	e.check(t, restReq("POST", "/v2/models/m1/infer", bearerHdr(tokB)), expect{status: 200, model: "m1"})
	for _, c := range []struct {
		client, model string
		want          float64
	}{
		{"client-a", "m1", 2}, {"client-a", "m2", 1}, {"client-a", labelOther, 2}, {"client-a", "m3", 0},
		{labelOther, "m1", 1}, {"client-b", "m1", 0},
	} {
		if got := testutil.ToFloat64(svc.metrics.requests.WithLabelValues(c.client, c.model, kindInfer, resultOK)); got != c.want {
			t.Errorf("requests{%s,%s} = %v, want %v", c.client, c.model, got, c.want)
		}
	}
}
