package wsapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/workers/wsapi"
)

// decoupledFake's model is decoupled.
type decoupledFake struct{ *fakeService }

func (decoupledFake) ModelDecoupled(model, _ string) bool { return model == "echo" }

// TestDecoupledModelRefused checks that the upgrade to a decoupled model is
// refused with a message naming the endpoints that serve it.
func TestDecoupledModelRefused(t *testing.T) {
	_, url := start(t, decoupledFake{newFake()}, wsapi.Options{})
	_, resp, err := websocket.Dial(t.Context(), url, &websocket.DialOptions{Subprotocols: []string{wire.WSProtocol}})
	if err == nil {
		t.Fatal("the upgrade succeeded")
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(body), "model 'echo' is decoupled") ||
		!strings.Contains(string(body), "generate_stream") {
		t.Errorf("status %d body %s", resp.StatusCode, body)
	}
}
