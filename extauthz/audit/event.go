// Package audit is helix-authz's audit trail: every account, admin and
// credential action, appended to a table whose rows carry a hash chain.
package audit

import "context"

// Results of an action.
const (
	ResultSuccess = "success"
	ResultFailure = "failure" // the action was tried and failed (wrong password, expired link)
	ResultDenied  = "denied"  // the actor was not allowed
)

// Event is one action. Actor and Target are references, never personal
// data: "user:<uuid>", "client:<id>", "apikey:<id>", "org:<uuid>",
// "session:<uuid>", "admin-token", "system". Detail holds non-personal
// facts (a role, a plan, a scope list): no email, name or secret.
type Event struct {
	Actor  string
	Action string // dotted, owned by the package that acts: "account.login", "apikey.rotate"
	Target string
	Result string
	// Operator names the person behind an admin-token action (declared by
	// the caller; personal, erased with the rest).
	Operator  string
	Source    string // the caller's address
	UserAgent string
	Detail    map[string]string
}

// Recorder appends events to the trail. Record returns an error when the
// event was not recorded; callers log it and count it, and never fail the
// user's action after it was done.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}
