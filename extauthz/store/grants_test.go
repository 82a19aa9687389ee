package store_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/extauthz/store"
)

// Public clients have no secret and never the client-credentials grant;
// EnsureClient leaves an existing client as it is.
func TestPublicClients(t *testing.T) {
	s, _ := newStore(t)
	app := &store.Client{ID: "cli", Public: true, RedirectURIs: []string{"http://127.0.0.1/callback"},
		GrantTypes: []string{store.GrantAuthorizationCode, store.GrantRefreshToken}, Scopes: []string{"account"}, Enabled: true}
	if ok, err := s.EnsureClient(ctx(t), app); err != nil || !ok {
		t.Fatalf("ensure: %v %v", ok, err)
	}
	changed := *app
	changed.Name = "changed"
	if ok, err := s.EnsureClient(ctx(t), &changed); err != nil || ok {
		t.Fatalf("ensure again: %v %v", ok, err)
	}
	got, err := s.GetClient(ctx(t), "cli")
	if err != nil || !got.Public || got.SecretHash != nil || got.Name != "" ||
		!slices.Equal(got.GrantTypes, app.GrantTypes) || !slices.Equal(got.RedirectURIs, app.RedirectURIs) {
		t.Fatalf("stored %+v %v", got, err)
	}
	if err := s.SetClientSecret(ctx(t), "cli", bytes.Repeat([]byte{1}, 32)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("secret of a public client: %v", err)
	}
	for name, c := range map[string]*store.Client{
		"public with a secret":      {ID: "a", Public: true, SecretHash: []byte{1}, GrantTypes: []string{store.GrantAuthorizationCode}},
		"confidential without one":  {ID: "b"},
		"public client credentials": {ID: "c", Public: true, GrantTypes: []string{store.GrantClientCredentials}},
		"unknown grant":             {ID: "d", SecretHash: []byte{1}, GrantTypes: []string{"password"}},
	} {
		if err := s.CreateClient(ctx(t), c); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A machine client gets the client-credentials grant.
	m := &store.Client{ID: "m", SecretHash: []byte{1}}
	if err := s.CreateClient(ctx(t), m); err != nil || !slices.Equal(m.GrantTypes, []string{store.GrantClientCredentials}) {
		t.Fatalf("machine client: %v %v", m.GrantTypes, err)
	}
}

func sig(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// A code is redeemed once; refresh tokens rotate once; a family's revocation
// names its sessions; pruning keeps a spent token while its family lives.
func TestGrants(t *testing.T) {
	s, dsn := newStore(t)
	conn, err := pgx.Connect(ctx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx(t))
	var user, sess string
	if err := conn.QueryRow(ctx(t), `INSERT INTO users (email) VALUES ('a@example.test') RETURNING id::text`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx(t), `INSERT INTO sessions (secret_hash, user_id, kind, client_id, expires_at)
		VALUES ($1, $2, 'token', 'cli', now() + interval '1 day') RETURNING id::text`, sig(9), user).Scan(&sess); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateClient(ctx(t), &store.Client{ID: "cli", Public: true, RedirectURIs: []string{"http://127.0.0.1/cb"},
		GrantTypes: []string{store.GrantAuthorizationCode, store.GrantRefreshToken}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	code := &store.AuthCode{Signature: sig(1), RequestID: "fam", ClientID: "cli", UserID: user, Scopes: []string{"account"},
		RedirectURI: "http://127.0.0.1:5/cb", CodeChallenge: string(bytes.Repeat([]byte{'c'}, 43)), RequestedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := s.CreateAuthCode(ctx(t), code); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAuthCode(ctx(t), sig(1))
	if err != nil || got.UsedAt != nil || got.UserID != user || got.RedirectURI != code.RedirectURI || got.CodeChallenge != code.CodeChallenge {
		t.Fatalf("code: %+v %v", got, err)
	}
	rt := &store.RefreshToken{Signature: sig(2), FamilyID: "fam", ClientID: "cli", UserID: user, SessionID: sess,
		Scopes: []string{"account"}, RequestedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	if err := s.RedeemAuthCode(ctx(t), sig(1), rt); err != nil {
		t.Fatal(err)
	}
	if err := s.RedeemAuthCode(ctx(t), sig(1), &store.RefreshToken{Signature: sig(3), FamilyID: "fam", ClientID: "cli",
		UserID: user, SessionID: sess, RequestedAt: now, ExpiresAt: now.Add(time.Hour)}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second redemption: %v", err)
	}
	if _, err := s.GetRefreshToken(ctx(t), sig(3)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the losing redemption stored a token: %v", err)
	}
	if got, _ := s.GetAuthCode(ctx(t), sig(1)); got.UsedAt == nil {
		t.Fatal("redeemed code not marked used")
	}

	next := &store.RefreshToken{Signature: sig(4), Scopes: []string{"account"}, ExpiresAt: now.Add(time.Hour)}
	if err := s.RotateRefreshToken(ctx(t), sig(2), next); err != nil {
		t.Fatal(err)
	}
	if err := s.RotateRefreshToken(ctx(t), sig(2), &store.RefreshToken{Signature: sig(5), ExpiresAt: now.Add(time.Hour)}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second rotation: %v", err)
	}
	old, err := s.GetRefreshToken(ctx(t), sig(2))
	if err != nil || old.UsedAt == nil || !old.SessionLive {
		t.Fatalf("rotated token: %+v %v", old, err)
	}
	fresh, err := s.GetRefreshToken(ctx(t), sig(4))
	if err != nil || fresh.FamilyID != "fam" || fresh.SessionID != sess || fresh.UserID != user || !fresh.RequestedAt.Equal(old.RequestedAt) {
		t.Fatalf("new token: %+v %v", fresh, err)
	}

	// Pruning keeps the spent token, expired, while its family has a live
	// one (its reuse is still recognised), and drops the family once none
	// is left.
	if n, err := s.PruneGrants(ctx(t), now.Add(30*time.Minute)); err != nil || n != 1 {
		t.Fatalf("prune the code only: %d %v", n, err)
	}
	if _, err := s.GetRefreshToken(ctx(t), sig(2)); err != nil {
		t.Fatalf("spent token of a live family pruned: %v", err)
	}
	sessions, err := s.RevokeRefreshFamily(ctx(t), "fam")
	if err != nil || !slices.Equal(sessions, []store.RevokedGrant{{SessionID: sess, UserID: user, ClientID: "cli"}}) {
		t.Fatalf("revoke family: %v %v", sessions, err)
	}
	if got, _ := s.GetRefreshToken(ctx(t), sig(4)); got.RevokedAt == nil {
		t.Fatal("family member not revoked")
	}
	if n, err := s.PruneGrants(ctx(t), now.Add(2*time.Hour)); err != nil || n != 2 {
		t.Fatalf("prune the dead family: %d %v", n, err)
	}
	for _, bad := range [][]byte{nil, {1}, bytes.Repeat([]byte{1}, 33)} {
		if _, err := s.GetRefreshToken(ctx(t), bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("signature %x: %v", bad, err)
		}
	}
}
