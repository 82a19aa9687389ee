package wsapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/wsapi"
)

// TestTrafficRouting: a connection whose path names no version serves
// the version a traffic policy chose (x-helix-model-version); a shadow
// copy (x-helix-shadow: 1) is served but spends no limit and records no
// usage; a bad header refuses the upgrade naming it.
func TestTrafficRouting(t *testing.T) {
	for _, tc := range []struct {
		name      string
		path      string // replaces /infer/ws
		header    http.Header
		version   string // served
		counted   bool
		refused   int
		refusedAs string
	}{
		{name: "policy's version", header: http.Header{wire.HeaderModelVersion: {"2"}}, version: "2", counted: true},
		{name: "path's version wins", path: "/versions/1/infer/ws", header: http.Header{wire.HeaderModelVersion: {"2"}}, version: "1", counted: true},
		{name: "no policy", version: "", counted: true},
		{name: "shadow copy", header: http.Header{wire.HeaderModelVersion: {"3"}, wire.HeaderShadow: {"1"}}, version: "3"},
		{name: "bad shadow", header: http.Header{wire.HeaderShadow: {"2"}}, refused: 400, refusedAs: `header x-helix-shadow is "2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			lim := &fakeLimiter{}
			lim.set(func(uint32) (infer.Verdict, error) { return infer.Verdict{Allowed: true}, nil })
			agg := usage.NewAggregator(100)
			_, url := start(t, f, wsapi.Options{Limiter: lim, Usage: agg, RecheckInterval: time.Hour})
			if tc.path != "" {
				url = strings.Replace(url, "/infer/ws", tc.path, 1)
			}
			hdr := gateway.Clone()
			for k, v := range tc.header {
				hdr[k] = v
			}
			if tc.refused != 0 {
				_, resp, err := websocket.Dial(ctx5(t), url, &websocket.DialOptions{Subprotocols: []string{wire.WSProtocol}, HTTPHeader: hdr})
				if err == nil || resp == nil || resp.StatusCode != tc.refused {
					t.Fatalf("dial: %v, %v; want %d", err, resp, tc.refused)
				}
				return
			}
			c := dial(t, url, hdr)
			send(t, c, websocket.MessageText, []byte(`{"id":"v","inputs":[{"name":"X","datatype":"INT8","shape":[1],"data":[1]}]}`))
			if a := read(t, c); a.code() != 0 {
				t.Fatalf("answer %v", a.json)
			}
			if got := f.lastVer.Load(); got != tc.version {
				t.Errorf("served version %v, want %q", got, tc.version)
			}
			_ = c.Close(websocket.StatusNormalClosure, "")
			lim.mu.Lock()
			spent := len(lim.ns)
			lim.mu.Unlock()
			var requests uint64
			if tc.counted {
				waitFor(t, func() bool {
					for _, r := range agg.Drain() {
						requests += r.GetRequests()
					}
					return requests >= 1
				})
			} else {
				time.Sleep(50 * time.Millisecond) // the answer is written before usage would be recorded
				for _, r := range agg.Drain() {
					requests += r.GetRequests()
				}
			}
			want := map[bool]int{true: 1, false: 0}[tc.counted]
			if spent != want || requests != uint64(want) {
				t.Errorf("%d limiter calls and %d requests in the usage ledger, want %d", spent, requests, want)
			}
		})
	}
}
