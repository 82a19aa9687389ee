package wsapi

import (
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/helixflow/helixflow/workers/httpapi"
)

// FuzzBinaryFrame: any binary message is split and decoded without
// panicking, and a frame that decodes keeps its tensors inside the message.
func FuzzBinaryFrame(f *testing.F) {
	h := `{"id":"a","inputs":[{"name":"X","datatype":"INT32","shape":[1],"parameters":{"binary_data_size":4}}]}`
	f.Add(append(append(binary.LittleEndian.AppendUint32(nil, uint32(len(h))), h...), 1, 0, 0, 0))
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{255, 255, 255, 255, '{'})
	b := `{"id":"b","inputs":[{"name":"S","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":9}}]}`
	f.Add(append(append(binary.LittleEndian.AppendUint32(nil, uint32(len(b))), b...), 1, 0, 0, 0, 'x', 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, msg []byte) {
		body, n, err := splitFrame(websocket.MessageBinary, msg)
		if err != nil {
			return
		}
		if n <= 0 || n > len(body) || len(body) != len(msg)-4 {
			t.Fatalf("splitFrame(%d bytes) = body %d, header %d", len(msg), len(body), n)
		}
		call, err := httpapi.DecodeInferRequest("m", "", body, n, 1<<20)
		if err != nil {
			_ = peekID(body[:n])
			return
		}
		total := 0
		for _, in := range call.Request().Inputs {
			if err := in.Validate(); err != nil {
				t.Fatalf("decoded input %q is invalid: %v", in.Name, err)
			}
			total += len(in.Data)
		}
		_ = total
	})
}

// Close reasons fit the 123 bytes of a close frame, cut on a rune boundary.
func TestTruncateReason(t *testing.T) {
	for _, s := range []string{"short", strings.Repeat("a", 200), strings.Repeat("é", 100)} {
		got := truncateReason(s)
		if len(got) > 123 || !utf8.ValidString(got) || !strings.HasPrefix(s, got) || (len(s) <= 123 && got != s) {
			t.Errorf("truncateReason(%d bytes) = %d bytes %q", len(s), len(got), got)
		}
	}
}
