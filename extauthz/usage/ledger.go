package usage

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/identity"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

// Ledger is the usage Ledger gRPC service (helixflow.usage.v1.Ledger) on
// helix-authz's gRPC listener. Only workers may report
// (identity.AuthzWorkerCaller): any other caller, Envoy included, gets
// PERMISSION_DENIED, whatever the listener's handshake admitted.
type Ledger struct {
	usagev1.UnimplementedLedgerServer

	store *Store
	orgOf func(clientID string) string
	log   *slog.Logger
}

// NewLedger returns the Ledger service writing into store; orgOf names a
// client's organization at write time.
func NewLedger(store *Store, orgOf func(clientID string) string, log *slog.Logger) *Ledger {
	if log == nil {
		log = slog.Default()
	}
	return &Ledger{store: store, orgOf: orgOf, log: log}
}

// Register registers the service on a gRPC server.
func (l *Ledger) Register(gs grpc.ServiceRegistrar) { usagev1.RegisterLedgerServer(gs, l) }

// Record applies a batch exactly once (Store.Apply).
func (l *Ledger) Record(ctx context.Context, req *usagev1.RecordRequest) (*usagev1.RecordResponse, error) {
	id, err := identity.FromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	if !identity.AuthzWorkerCaller(id) {
		return nil, status.Errorf(codes.PermissionDenied, "%s may not report usage: only worker identities may", id)
	}
	dup, err := l.store.Apply(ctx, req, l.orgOf)
	switch {
	case errors.Is(err, ErrInvalid):
		l.log.Warn("usage: refused a batch", "caller", id, "reporter", req.GetReporter(), "seq", req.GetSeq(), "error", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, status.FromContextError(err).Err()
	case err != nil:
		l.log.Warn("usage: apply a batch", "caller", id, "reporter", req.GetReporter(), "seq", req.GetSeq(), "error", err)
		return nil, status.Error(codes.Unavailable, "the usage ledger cannot be written now; send the batch again")
	}
	return &usagev1.RecordResponse{Duplicate: dup}, nil
}

// Sink is the store as internal/usage's Sink, for helix-authz's own
// reporter (its throttled counts), which applies in process.
type Sink struct {
	Store *Store
	OrgOf func(clientID string) string
}

// Record applies req (Store.Apply).
func (s Sink) Record(ctx context.Context, req *usagev1.RecordRequest) (bool, error) {
	return s.Store.Apply(ctx, req, s.OrgOf)
}
