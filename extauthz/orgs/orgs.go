// Package orgs is the organizations' self-service API (/api/v1/orgs/...):
// people create organizations, manage their members, and create, rotate
// and revoke the organization's OAuth2 clients and API keys within the
// policy platform admins set (the admin API's PUT /admin/v1/orgs/{org}/policy).
//
// Roles, each including the ones below it:
//
//	viewer  reads the organization, its members, policy, clients and keys
//	member  creates, changes, rotates and revokes clients and keys
//	admin   renames the organization, adds members and changes or removes
//	        those who are not owners (it cannot make an owner)
//	owner   everything: owners, deleting the organization
//
// An organization keeps at least one owner (store.ErrLastOwner). Anyone may
// leave an organization (remove themselves), the last owner excepted. A
// caller who is no member gets 404 for everything under the organization,
// and so does a client or key of another organization: neither's existence
// is revealed. Platform admins have no role here by being platform admins;
// they act through the admin API.
//
// The rules for clients and keys (scopes, models, plans, hashing, secrets
// shown once) are the admin API's (admin.ClientRequest.Apply,
// admin.APIKeyRequest.Check, admin.NewAPIKeySecret); the policy only
// narrows them: a plan or scope outside it is 403 naming it, a client or
// key over its count 409.
package orgs

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/extauthz/audit"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/sourcelimit"
)

// Store is the part of the database the organizations' API reads and
// changes (*store.Store has it).
type Store interface {
	GetUser(ctx context.Context, id string) (*store.User, error)
	GetUserByEmail(ctx context.Context, email string) (*store.User, error)

	CreateOrg(ctx context.Context, o *store.Org, ownerID string) error
	GetOrg(ctx context.Context, id string) (*store.Org, error)
	UserOrgs(ctx context.Context, userID string) ([]store.OrgRole, error)
	RenameOrg(ctx context.Context, id, name string) error
	DeleteOrg(ctx context.Context, id string) error

	MemberRole(ctx context.Context, orgID, userID string) (string, error)
	ListMembers(ctx context.Context, orgID string) ([]store.Member, error)
	AddMember(ctx context.Context, orgID, userID, role string) error
	SetMemberRole(ctx context.Context, orgID, userID, role string) error

	ListOrgClients(ctx context.Context, orgID string) ([]store.Client, error)
	CreateOrgClient(ctx context.Context, c *store.Client) error
	GetClient(ctx context.Context, id string) (*store.Client, error)
	UpdateClient(ctx context.Context, c *store.Client) error
	SetClientSecret(ctx context.Context, id string, hash []byte) error
	DeleteClient(ctx context.Context, id string) error

	ListOrgAPIKeys(ctx context.Context, orgID string) ([]store.APIKey, error)
	CreateOrgAPIKey(ctx context.Context, orgID string, k *store.APIKey) error
	RotateAPIKey(ctx context.Context, orgID string, next *store.APIKey, oldUntil time.Time) error
	GetAPIKey(ctx context.Context, id string) (*store.APIKey, error)
	RevokeAPIKey(ctx context.Context, idOrPrefix string) error
	APIKeyUsage(ctx context.Context, ids []string, since time.Time) (map[string][]store.DayCount, error)
}

// Config configures the organizations' API.
type Config struct {
	Store  Store
	Hasher *secret.Hasher
	// Plans are the gateway's plans (the admin API's): a new
	// organization's policy allows the default one.
	Plans *admin.Plans
	// Audit receives every action, allowed, failed or denied.
	Audit audit.Recorder
	// Source returns a request's source address for the audit trail
	// (nil: the TCP peer).
	Source func(*http.Request) string
	Logger *slog.Logger
	Now    func() time.Time
}

// Limits of self-service.
const (
	// MaxOwnedOrgs bounds the organizations one person may own: each
	// comes with its own client and key counts, so creating organizations
	// without end would lift every limit.
	MaxOwnedOrgs = 10
	// MaxOverlap bounds how long a rotated API key keeps working.
	MaxOverlap = 30 * 24 * time.Hour
	// DefaultOverlap is the overlap of a rotation that names none.
	DefaultOverlap = 24 * time.Hour
	// UsageDays is how many days of use a key view carries.
	UsageDays = 30
)

// API serves /api/v1/orgs.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the organizations' API. Mount it behind session.Middleware
// and session.Manager.Require: it reads the caller from
// session.PrincipalFrom.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.Hasher == nil || cfg.Plans == nil {
		return nil, errors.New("orgs: a store, a hasher and the gateway's plans are required")
	}
	if cfg.Audit == nil {
		return nil, errors.New("orgs: an audit recorder is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	a.routes()
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *API) source(r *http.Request) string {
	if a.cfg.Source != nil {
		return a.cfg.Source(r)
	}
	return sourcelimit.Sources{}.String(r) // the peer: no proxy is trusted
}

// Roles ranked: a role may do what the ones below it may.
var rank = map[string]int{store.RoleViewer: 1, store.RoleMember: 2, store.RoleAdmin: 3, store.RoleOwner: 4}

func validRole(role string) bool { return rank[role] > 0 }

// atLeast reports whether role includes want.
func atLeast(role, want string) bool { return rank[role] >= rank[want] && rank[role] > 0 }
