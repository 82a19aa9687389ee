package infer

import "github.com/helixflow/helixflow/internal/wire"

// CheckSharedMemoryClient refuses shared memory for a request that came
// through the gateway: client holds the request's wire.HeaderClient values,
// which helix-authz alone sets. A region is memory on the worker's host, so
// a remote client's region names would at best be refused and at worst
// match another local client's region. Both front ends call it before they
// register a region or read or write a tensor in one.
func CheckSharedMemoryClient(client []string) error {
	if len(client) > 0 {
		return &Error{Code: CodeFailedPrecondition, Msg: wire.SharedMemoryThroughGateway}
	}
	return nil
}
