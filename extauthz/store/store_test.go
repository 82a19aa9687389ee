package store_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/store"
)

func TestClients(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)

	in := client("acme")
	if err := s.CreateClient(c, in); err != nil {
		t.Fatal(err)
	}
	if in.CreatedAt.IsZero() || in.UpdatedAt.IsZero() {
		t.Errorf("timestamps not written back: %+v", in)
	}
	if err := s.CreateClient(c, client("acme")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("create twice: %v, want ErrConflict", err)
	}

	got, err := s.GetClient(c, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "acme" || got.Name != in.Name || !bytes.Equal(got.SecretHash, in.SecretHash) ||
		!slices.Equal(got.Scopes, in.Scopes) || !slices.Equal(got.Models, in.Models) ||
		!slices.Equal(got.Audience, in.Audience) || got.Plan != "free" || !got.Enabled ||
		!got.CreatedAt.Equal(in.CreatedAt) || !got.UpdatedAt.Equal(in.UpdatedAt) {
		t.Errorf("GetClient = %+v, want %+v", got, in)
	}
	if _, err := s.GetClient(c, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get unknown: %v, want ErrNotFound", err)
	}

	// Nil lists are stored as empty ones, and an explicit creation time is kept.
	created := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	bare := &store.Client{ID: "bare", SecretHash: []byte{1}, CreatedAt: created}
	if err := s.CreateClient(c, bare); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetClient(c, "bare")
	if err != nil {
		t.Fatal(err)
	}
	if got.Scopes == nil || len(got.Scopes) != 0 || len(got.Models) != 0 || got.Enabled {
		t.Errorf("bare client = %+v", got)
	}
	if !got.CreatedAt.Equal(created) || !got.UpdatedAt.Equal(created) {
		t.Errorf("created/updated = %v/%v, want %v", got.CreatedAt, got.UpdatedAt, created)
	}

	list, err := s.ListClients(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "acme" || list[1].ID != "bare" {
		t.Errorf("ListClients = %+v", list)
	}

	up := client("acme")
	up.Name, up.Scopes, up.Models, up.Audience, up.Plan, up.Enabled = "Acme", []string{"models:resnet:infer"}, []string{"resnet"}, []string{"a", "b"}, "gold", false
	up.SecretHash = []byte("ignored")
	if err := s.UpdateClient(c, up); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetClient(c, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Acme" || !slices.Equal(got.Scopes, up.Scopes) || !slices.Equal(got.Models, up.Models) ||
		!slices.Equal(got.Audience, up.Audience) || got.Plan != "gold" || got.Enabled {
		t.Errorf("after update: %+v", got)
	}
	if !bytes.Equal(got.SecretHash, in.SecretHash) {
		t.Error("UpdateClient changed the secret hash")
	}
	if got.UpdatedAt.Before(in.UpdatedAt) || !got.CreatedAt.Equal(in.CreatedAt) {
		t.Errorf("timestamps after update: created %v updated %v (before: %v %v)", got.CreatedAt, got.UpdatedAt, in.CreatedAt, in.UpdatedAt)
	}
	if err := s.UpdateClient(c, client("nobody")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update unknown: %v, want ErrNotFound", err)
	}

	if err := s.SetClientSecret(c, "acme", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if got, err = s.GetClient(c, "acme"); err != nil || string(got.SecretHash) != "new" {
		t.Errorf("after SetClientSecret: %q, %v", got.SecretHash, err)
	}
	if err := s.SetClientSecret(c, "nobody", []byte("x")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("set secret of unknown: %v, want ErrNotFound", err)
	}
	if err := s.SetClientSecret(c, "acme", nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("empty secret hash: %v, want ErrInvalid", err)
	}

	if err := s.DeleteClient(c, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClient(c, "acme"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get deleted: %v, want ErrNotFound", err)
	}
	if err := s.DeleteClient(c, "acme"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete twice: %v, want ErrNotFound", err)
	}
}

func TestClientValidation(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	tests := []struct {
		name string
		mod  func(*store.Client)
	}{
		{"empty id", func(cl *store.Client) { cl.ID = "" }},
		{"no secret", func(cl *store.Client) { cl.SecretHash = nil }},
		{"empty scope", func(cl *store.Client) { cl.Scopes = []string{"a", ""} }},
		{"empty model", func(cl *store.Client) { cl.Models = []string{""} }},
		{"NUL in name", func(cl *store.Client) { cl.Name = "a\x00b" }},
		{"bad UTF-8 in plan", func(cl *store.Client) { cl.Plan = "\xff\xfe" }},
		{"id too long", func(cl *store.Client) { cl.ID = string(bytes.Repeat([]byte("x"), 300)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl := client("v")
			tc.mod(cl)
			if err := s.CreateClient(c, cl); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateClient: %v, want ErrInvalid", err)
			}
		})
	}
	if err := s.CreateClient(c, nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("nil client: %v", err)
	}
	if _, err := s.GetClient(c, ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("get empty id: %v", err)
	}
	if list, err := s.ListClients(c); err != nil || len(list) != 0 {
		t.Errorf("something was stored: %v %v", list, err)
	}
}

func apiKey(id, prefix, clientID string) *store.APIKey {
	return &store.APIKey{ID: id, Prefix: prefix, Hash: []byte("h-" + id), ClientID: clientID, Name: "key " + id, Scopes: []string{"models:infer"}}
}

func TestAPIKeys(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	for _, id := range []string{"a", "b"} {
		if err := s.CreateClient(c, client(id)); err != nil {
			t.Fatal(err)
		}
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	k1 := apiKey("k1", "hx_aaa", "a")
	k1.ExpiresAt = &exp
	// Fields the store owns are ignored on create.
	k1.UseCount = 99
	for _, k := range []*store.APIKey{k1, apiKey("k2", "hx_bbb", "a"), apiKey("k3", "hx_ccc", "b")} {
		if err := s.CreateAPIKey(c, k); err != nil {
			t.Fatal(err)
		}
		if k.CreatedAt.IsZero() {
			t.Error("CreatedAt not written back")
		}
	}
	if err := s.CreateAPIKey(c, apiKey("k4", "hx_aaa", "a")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate prefix: %v, want ErrConflict", err)
	}
	if err := s.CreateAPIKey(c, apiKey("k1", "hx_new", "a")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate id: %v, want ErrConflict", err)
	}
	if err := s.CreateAPIKey(c, apiKey("k5", "hx_eee", "nobody")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown client: %v, want ErrNotFound", err)
	}
	if err := s.CreateAPIKey(c, &store.APIKey{ID: "k6", Prefix: "hx_fff", ClientID: "a"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("no hash: %v, want ErrInvalid", err)
	}

	got, err := s.GetAPIKeyByPrefix(c, "hx_aaa")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "k1" || got.ClientID != "a" || string(got.Hash) != "h-k1" || got.Name != "key k1" ||
		!slices.Equal(got.Scopes, []string{"models:infer"}) || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) ||
		got.LastUsedAt != nil || got.UseCount != 0 || got.RevokedAt != nil {
		t.Errorf("GetAPIKeyByPrefix = %+v", got)
	}
	if _, err := s.GetAPIKeyByPrefix(c, "hx_zzz"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown prefix: %v", err)
	}

	ids := func(ks []store.APIKey) []string {
		var out []string
		for _, k := range ks {
			out = append(out, k.ID)
		}
		return out
	}
	all, err := s.ListAPIKeys(c, "")
	if err != nil || !slices.Equal(ids(all), []string{"k1", "k2", "k3"}) {
		t.Errorf("ListAPIKeys(all) = %v, %v", ids(all), err)
	}
	ofA, err := s.ListAPIKeys(c, "a")
	if err != nil || !slices.Equal(ids(ofA), []string{"k1", "k2"}) {
		t.Errorf("ListAPIKeys(a) = %v, %v", ids(ofA), err)
	}
	none, err := s.ListAPIKeys(c, "nobody")
	if err != nil || len(none) != 0 {
		t.Errorf("ListAPIKeys(nobody) = %v, %v", none, err)
	}

	// Revoke by id, then by prefix; revoking again keeps the first time.
	if err := s.RevokeAPIKey(c, "k1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAPIKey(c, "hx_bbb"); err != nil {
		t.Fatal(err)
	}
	first, _ := s.GetAPIKeyByPrefix(c, "hx_aaa")
	if first.RevokedAt == nil {
		t.Fatal("k1 not revoked")
	}
	if k2, _ := s.GetAPIKeyByPrefix(c, "hx_bbb"); k2.RevokedAt == nil {
		t.Error("k2 not revoked by prefix")
	}
	time.Sleep(5 * time.Millisecond)
	if err := s.RevokeAPIKey(c, "k1"); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.GetAPIKeyByPrefix(c, "hx_aaa"); !again.RevokedAt.Equal(*first.RevokedAt) {
		t.Errorf("revoked_at moved from %v to %v", first.RevokedAt, again.RevokedAt)
	}
	if k3, _ := s.GetAPIKeyByPrefix(c, "hx_ccc"); k3.RevokedAt != nil {
		t.Error("k3 revoked too")
	}
	if err := s.RevokeAPIKey(c, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}

	// An id that is also another key's prefix revokes the key with that id.
	if err := s.CreateAPIKey(c, apiKey("hx_ddd", "hx_x1", "b")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAPIKey(c, apiKey("k7", "hx_ddd", "b")); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAPIKey(c, "hx_ddd"); err != nil {
		t.Fatal(err)
	}
	byID, _ := s.GetAPIKeyByPrefix(c, "hx_x1")
	byPrefix, _ := s.GetAPIKeyByPrefix(c, "hx_ddd")
	if byID.RevokedAt == nil || byPrefix.RevokedAt != nil {
		t.Errorf("ambiguous revoke: by id revoked=%v, by prefix revoked=%v", byID.RevokedAt != nil, byPrefix.RevokedAt != nil)
	}
}

func TestRecordAPIKeyUse(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	if err := s.CreateClient(c, client("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAPIKey(c, apiKey("k", "hx_k", "a")); err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	t0 := t1.Add(-time.Hour)
	steps := []struct {
		at   time.Time
		n    int64
		last time.Time
		uses int64
	}{
		{t1, 3, t1, 3},
		{t0, 2, t1, 5}, // an older batch does not move last use back
		{t1.Add(time.Minute), 10, t1.Add(time.Minute), 15},
		{t1, 0, t1.Add(time.Minute), 15},
	}
	for i, st := range steps {
		if err := s.RecordAPIKeyUse(c, "hx_k", st.at, st.n); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		k, err := s.GetAPIKeyByPrefix(c, "hx_k")
		if err != nil {
			t.Fatal(err)
		}
		if k.UseCount != st.uses || k.LastUsedAt == nil || !k.LastUsedAt.Equal(st.last) {
			t.Errorf("step %d: uses %d last %v, want %d %v", i, k.UseCount, k.LastUsedAt, st.uses, st.last)
		}
	}
	if err := s.RecordAPIKeyUse(c, "hx_none", t1, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown prefix: %v", err)
	}
	if err := s.RecordAPIKeyUse(c, "hx_k", t1, -1); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("negative n: %v", err)
	}
}

func TestDeleteClientCascades(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	for _, id := range []string{"a", "b"} {
		if err := s.CreateClient(c, client(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []*store.APIKey{apiKey("k1", "p1", "a"), apiKey("k2", "p2", "a"), apiKey("k3", "p3", "b")} {
		if err := s.CreateAPIKey(c, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteClient(c, "a"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"p1", "p2"} {
		if _, err := s.GetAPIKeyByPrefix(c, p); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("key %s of deleted client: %v, want ErrNotFound", p, err)
		}
	}
	if _, err := s.GetAPIKeyByPrefix(c, "p3"); err != nil {
		t.Errorf("key of the other client: %v", err)
	}
}

func TestSigningKeys(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	now := time.Now().Truncate(time.Microsecond)
	// JWK bytes come back exactly, spacing and key order included.
	jwk := []byte(`{"kty":"EC", "crv":"P-256","x":"abc","y":"def"}`)
	keys := []*store.SigningKey{
		{KID: "old", Alg: "RS256", PublicJWK: []byte(`{"kty":"RSA"}`), PrivateSealed: []byte{1}, CreatedAt: now.Add(-3 * time.Hour)},
		{KID: "mid", Alg: "ES256", PublicJWK: jwk, PrivateSealed: []byte{2, 0, 3}, CreatedAt: now.Add(-2 * time.Hour)},
		{KID: "new", Alg: "ES256", PublicJWK: []byte(`{}`), PrivateSealed: []byte{3}, SignsFrom: now.Add(time.Minute)},
	}
	for _, k := range keys {
		if err := s.InsertSigningKey(c, k); err != nil {
			t.Fatal(err)
		}
	}
	if !keys[1].SignsFrom.Equal(keys[1].CreatedAt) {
		t.Errorf("zero SignsFrom = %v, want CreatedAt %v", keys[1].SignsFrom, keys[1].CreatedAt)
	}
	if keys[2].CreatedAt.IsZero() || !keys[2].SignsFrom.Equal(now.Add(time.Minute)) {
		t.Errorf("new key times: %v %v", keys[2].CreatedAt, keys[2].SignsFrom)
	}
	if err := s.InsertSigningKey(c, &store.SigningKey{KID: "mid", Alg: "ES256", PublicJWK: []byte(`{}`), PrivateSealed: []byte{1}}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate kid: %v", err)
	}
	for _, bad := range []store.SigningKey{
		{KID: "x", Alg: "HS256", PublicJWK: []byte(`{}`), PrivateSealed: []byte{1}},
		{KID: "x", Alg: "none", PublicJWK: []byte(`{}`), PrivateSealed: []byte{1}},
		{KID: "x", Alg: "ES256", PublicJWK: []byte(`{`), PrivateSealed: []byte{1}},
		{KID: "x", Alg: "ES256", PublicJWK: []byte(`[1]`), PrivateSealed: []byte{1}},
		{KID: "x", Alg: "ES256", PublicJWK: []byte(`{}`)},
		{KID: "", Alg: "ES256", PublicJWK: []byte(`{}`), PrivateSealed: []byte{1}},
	} {
		if err := s.InsertSigningKey(c, &bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("InsertSigningKey(%+v): %v, want ErrInvalid", bad, err)
		}
	}

	kids := func() []string {
		t.Helper()
		ks, err := s.ListSigningKeys(c)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range ks {
			out = append(out, k.KID)
		}
		return out
	}
	if got := kids(); !slices.Equal(got, []string{"new", "mid", "old"}) {
		t.Errorf("ListSigningKeys = %v, want newest first", got)
	}
	ks, _ := s.ListSigningKeys(c)
	if mid := ks[1]; !bytes.Equal(mid.PublicJWK, jwk) || !bytes.Equal(mid.PrivateSealed, []byte{2, 0, 3}) || mid.Alg != "ES256" {
		t.Errorf("mid key = %+v (jwk %s)", mid, mid.PublicJWK)
	}

	// Retire: the earlier time wins.
	if err := s.RetireSigningKey(c, "mid", now); err != nil {
		t.Fatal(err)
	}
	if err := s.RetireSigningKey(c, "mid", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ks, _ = s.ListSigningKeys(c)
	if ks[1].RetiredAt == nil || !ks[1].RetiredAt.Equal(now) {
		t.Errorf("mid retired at %v, want %v", ks[1].RetiredAt, now)
	}
	if err := s.RetireSigningKey(c, "nope", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("retire unknown: %v", err)
	}

	// Expired keys leave the list, future expiries do not.
	if err := s.ExpireSigningKey(c, "old", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.ExpireSigningKey(c, "mid", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := kids(); !slices.Equal(got, []string{"new", "mid"}) {
		t.Errorf("after expiry: %v", got)
	}
	if err := s.ExpireSigningKey(c, "nope", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expire unknown: %v", err)
	}

	n, err := s.DeleteExpiredSigningKeys(c, now)
	if err != nil || n != 1 {
		t.Errorf("DeleteExpiredSigningKeys = %d, %v; want 1", n, err)
	}
	n, err = s.DeleteExpiredSigningKeys(c, now)
	if err != nil || n != 0 {
		t.Errorf("again = %d, %v; want 0", n, err)
	}
	// "mid" expires in an hour: kept until then.
	if n, _ := s.DeleteExpiredSigningKeys(c, now.Add(2*time.Hour)); n != 1 {
		t.Errorf("delete after mid's expiry: %d, want 1", n)
	}
	if got := kids(); !slices.Equal(got, []string{"new"}) {
		t.Errorf("left: %v", got)
	}
}

func TestRevocations(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	start := time.Now().Add(-time.Second)
	hour := time.Now().Add(time.Hour)
	if err := s.RevokeToken(c, "j1", hour); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(c, "j1", hour.Add(time.Hour)); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	if err := s.RevokeToken(c, "j2", time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(c, "j3", hour); err != nil {
		t.Fatal(err)
	}
	for jti, want := range map[string]bool{"j1": true, "j2": true, "j3": true, "j4": false} {
		got, err := s.IsRevoked(c, jti)
		if err != nil || got != want {
			t.Errorf("IsRevoked(%s) = %v, %v; want %v", jti, got, err, want)
		}
	}
	if _, err := s.IsRevoked(c, ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("IsRevoked(\"\"): %v", err)
	}
	if err := s.RevokeToken(c, "j5", time.Time{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("zero expiry: %v", err)
	}

	// Expired tokens (j2) need no revocation in caches.
	got, err := s.RevokedSince(c, time.Time{})
	if err != nil || !slices.Equal(got, []string{"j1", "j3"}) {
		t.Errorf("RevokedSince(zero) = %v, %v", got, err)
	}
	got, err = s.RevokedSince(c, start)
	if err != nil || !slices.Equal(got, []string{"j1", "j3"}) {
		t.Errorf("RevokedSince(start) = %v, %v", got, err)
	}
	got, err = s.RevokedSince(c, time.Now().Add(time.Hour))
	if err != nil || len(got) != 0 {
		t.Errorf("RevokedSince(future) = %v, %v", got, err)
	}

	n, err := s.PruneRevoked(c, time.Now())
	if err != nil || n != 1 {
		t.Errorf("PruneRevoked = %d, %v; want 1", n, err)
	}
	if r, _ := s.IsRevoked(c, "j2"); r {
		t.Error("j2 still there after pruning")
	}
	if r, _ := s.IsRevoked(c, "j1"); !r {
		t.Error("j1 pruned before its expiry")
	}
}
