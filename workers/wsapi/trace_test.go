package wsapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/helixflow/helixflow/workers/scheduler/schedtest"
	"github.com/helixflow/helixflow/workers/wsapi"
)

// TestTraceMessagesContinueTheUpgradesTrace: every message of a connection
// whose upgrade request carried a sampled traceparent has its own server
// span under the gateway's span, with queue, batch, execute and encode.
func TestTraceMessagesContinueTheUpgradesTrace(t *testing.T) {
	rec := schedtest.Tracing()
	svc := schedtest.New(t)
	_, url := start(t, svc, wsapi.Options{})
	id, caller := schedtest.IDs()
	c := dial(t, url, http.Header{"Traceparent": {schedtest.Traceparent(id, caller, true)}})
	for _, msgID := range []string{"1", "2"} {
		send(t, c, websocket.MessageText, []byte(`{"id":"`+msgID+`","inputs":[{"name":"X","datatype":"INT32","shape":[1,1],"data":[9]}]}`))
		if a := read(t, c); a.id() != msgID || a.code() != 0 {
			t.Fatalf("answer %v, want id %s", a.json, msgID)
		}
	}
	// A message's span ends after its answer is written: wait for both.
	servers := func() int {
		n := 0
		for _, s := range schedtest.Spans(rec, id) {
			if s.Name() == "websocket infer message" {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(5 * time.Second); servers() < 2 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
	}
	if n := servers(); n != 2 {
		t.Errorf("%d message spans, want 2", n)
	}
	// CheckRequest checks one of the two, enough for the shape.
	schedtest.CheckRequest(t, rec, id, caller, "websocket infer message", 1)

	// A connection with an unsampled traceparent records nothing.
	unsampled, _ := schedtest.IDs()
	c2 := dial(t, url, http.Header{"Traceparent": {schedtest.Traceparent(unsampled, caller, false)}})
	send(t, c2, websocket.MessageText, []byte(`{"id":"3","inputs":[{"name":"X","datatype":"INT32","shape":[1,1],"data":[9]}]}`))
	read(t, c2)
	if spans := schedtest.Spans(rec, unsampled); len(spans) != 0 {
		t.Errorf("%d spans for an unsampled connection", len(spans))
	}
}
