package infer

import (
	"strconv"

	"github.com/helixflow/helixflow/internal/wire"
)

// Routing is what a traffic policy's Envoy route tells the worker about
// one inference request (docs/rollouts.md). Only Envoy can set these
// headers: the gateway strips client-sent x-helix-* headers, and workers
// admit only Envoy's mTLS identity.
type Routing struct {
	// Version is wire.HeaderModelVersion: the version the policy's variant
	// chose, served when the request names none ("": the model's version
	// policy).
	Version string
	// Shadow is wire.HeaderShadow "1": a copy Envoy mirrored to a shadow
	// variant. It is served, but its usage is not recorded and no stream
	// limit is spent: the client is counted for the request it sent.
	Shadow bool
}

// ReadRouting reads Routing from a request's values of
// wire.HeaderModelVersion and wire.HeaderShadow. Envoy sets each at most
// once; anything else is refused INVALID_ARGUMENT naming the header
// rather than served by a version nobody chose.
func ReadRouting(versions, shadow []string) (Routing, error) {
	var r Routing
	switch len(versions) {
	case 0:
	case 1:
		if err := wire.CheckVersion(versions[0]); err != nil {
			return Routing{}, Errorf(CodeInvalidArgument, "header %s: %w", wire.HeaderModelVersion, err)
		}
		r.Version = versions[0]
	default:
		return Routing{}, Errorf(CodeInvalidArgument, "request carries %d %s headers; the gateway sets one", len(versions), wire.HeaderModelVersion)
	}
	switch {
	case len(shadow) == 0:
	case len(shadow) == 1 && shadow[0] == "1":
		r.Shadow = true
	case len(shadow) == 1:
		return Routing{}, Errorf(CodeInvalidArgument, "header %s is %s; the gateway sets 1", wire.HeaderShadow, strconv.Quote(shadow[0]))
	default:
		return Routing{}, Errorf(CodeInvalidArgument, "request carries %d %s headers; the gateway sets one", len(shadow), wire.HeaderShadow)
	}
	return r, nil
}

// VersionFor is the version to serve a request that names requested: its
// own when it names one (a request naming a version keeps it), else the
// policy's.
func (r Routing) VersionFor(requested string) string {
	if requested != "" {
		return requested
	}
	return r.Version
}
