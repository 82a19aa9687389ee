package infer

import (
	"testing"

	"github.com/helixflow/helixflow/internal/wire"
)

func TestCheckSharedMemoryClient(t *testing.T) {
	if err := CheckSharedMemoryClient(nil); err != nil {
		t.Errorf("local client: %v", err)
	}
	err := CheckSharedMemoryClient([]string{"c1"})
	if CodeOf(err) != CodeFailedPrecondition || err.Error() != wire.SharedMemoryThroughGateway {
		t.Errorf("gateway client: %v (code %v)", err, CodeOf(err))
	}
	// An empty header value still means the gateway set it.
	if CheckSharedMemoryClient([]string{""}) == nil {
		t.Error("empty client header accepted")
	}
}
