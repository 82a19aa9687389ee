package store_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/store"
)

// Values that would break SQL built from strings must round-trip exactly
// through every field, or be refused with ErrInvalid, and never change
// anything else.
func TestSQLMetacharacters(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	changes := listen(t, s)
	expect(t, changes, store.Change{Kind: store.ChangeResync}, 5*time.Second)

	values := []struct {
		name    string
		v       string
		invalid bool
	}{
		{"quote", `'`, false},
		{"doubled quotes", `''`, false},
		{"double quote", `"`, false},
		{"backslash", `\`, false},
		{"escaped NUL text", `\x00`, false},
		{"drop table", `'; DROP TABLE clients; --`, false},
		{"tautology", `x' OR '1'='1`, false},
		{"placeholder", `$1`, false},
		{"dollar quote", `$$;SELECT 1;$$`, false},
		{"like wildcards", `%_*`, false},
		{"comment", `/* c */ --`, false},
		{"colon", `kind:id:more`, false},
		{"newlines", "a\nb\r\tc", false},
		{"unicode", "ü€😀\u202e", false},
		{"array syntax", `{a,"b"}`, false},
		{"long", strings.Repeat(`';`, 100), false},
		{"NUL", "a\x00b", true},
		{"only NUL", "\x00", true},
		{"bad UTF-8", "a\xffb", true},
		{"empty", "", true},
	}
	valid := 0
	for _, tc := range values {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			check := func(op string, err error) bool {
				t.Helper()
				if tc.invalid {
					if !errors.Is(err, store.ErrInvalid) {
						t.Errorf("%s: %v, want ErrInvalid", op, err)
					}
					return false
				}
				if err != nil {
					t.Errorf("%s: %v", op, err)
					return false
				}
				return true
			}

			cl := &store.Client{ID: v, Name: v, SecretHash: []byte(v + "\x00"), Scopes: []string{v}, Models: []string{v}, Audience: []string{v}, Plan: v, Enabled: true}
			if check("CreateClient", s.CreateClient(c, cl)) {
				expect(t, changes, store.Change{Kind: store.ChangeClient, ID: v}, time.Second)
			}
			got, err := s.GetClient(c, v)
			if check("GetClient", err) {
				if got.ID != v || got.Name != v || got.Plan != v || string(got.SecretHash) != v+"\x00" ||
					!slices.Equal(got.Scopes, []string{v}) || !slices.Equal(got.Models, []string{v}) || !slices.Equal(got.Audience, []string{v}) {
					t.Errorf("client came back as %+v", got)
				}
			}
			// Every text field on its own, next to safe values.
			if !tc.invalid {
				for _, mod := range []func(*store.Client){
					func(c *store.Client) { c.Name = v },
					func(c *store.Client) { c.Plan = v },
					func(c *store.Client) { c.Scopes = []string{"a", v} },
				} {
					u := client(v)
					mod(u)
					if err := s.UpdateClient(c, u); err != nil {
						t.Errorf("UpdateClient: %v", err)
					}
					expect(t, changes, store.Change{Kind: store.ChangeClient, ID: v}, time.Second)
				}
			} else {
				for _, mod := range []func(*store.Client){
					func(c *store.Client) { c.Name = v },
					func(c *store.Client) { c.Plan = v },
					func(c *store.Client) { c.Scopes = []string{"a", v} },
					func(c *store.Client) { c.Models = []string{v} },
					func(c *store.Client) { c.Audience = []string{v} },
				} {
					u := client("safe-" + tc.name)
					mod(u)
					if tc.v == "" && u.Name == "" || tc.v == "" && u.Plan == "" {
						continue // empty name and plan are fine
					}
					check("CreateClient(field)", s.CreateClient(c, u))
				}
			}

			k := &store.APIKey{ID: v, Prefix: v, Hash: []byte(v + "h"), ClientID: v, Name: v, Scopes: []string{v}}
			if check("CreateAPIKey", s.CreateAPIKey(c, k)) {
				expect(t, changes, store.Change{Kind: store.ChangeAPIKey, ID: v}, time.Second)
			}
			gk, err := s.GetAPIKeyByPrefix(c, v)
			if check("GetAPIKeyByPrefix", err) && (gk.ID != v || gk.Prefix != v || gk.ClientID != v || gk.Name != v || !slices.Equal(gk.Scopes, []string{v})) {
				t.Errorf("api key came back as %+v", gk)
			}
			ks, err := s.ListAPIKeys(c, v)
			if !tc.invalid && (err != nil || len(ks) != 1 || ks[0].ID != v) && v != "" {
				t.Errorf("ListAPIKeys: %v, %v", ks, err)
			}
			check("RecordAPIKeyUse", s.RecordAPIKeyUse(c, v, time.Now(), 1))
			check("RevokeAPIKey", s.RevokeAPIKey(c, v))
			if !tc.invalid {
				expect(t, changes, store.Change{Kind: store.ChangeAPIKey, ID: v}, time.Second)
			}

			if check("RevokeToken", s.RevokeToken(c, v, time.Now().Add(time.Hour))) {
				expect(t, changes, store.Change{Kind: store.ChangeRevoked, ID: v}, time.Second)
			}
			revoked, err := s.IsRevoked(c, v)
			if check("IsRevoked", err) && !revoked {
				t.Error("not revoked")
			}

			sk := &store.SigningKey{KID: v, Alg: "ES256", PublicJWK: []byte(`{"kid":` + quoteJSON(v) + `}`), PrivateSealed: []byte(v + "k")}
			if tc.invalid && v != "" {
				sk.PublicJWK = []byte(`{}`)
			}
			check("InsertSigningKey", s.InsertSigningKey(c, sk))
			check("RetireSigningKey", s.RetireSigningKey(c, v, time.Now()))
			check("ExpireSigningKey", s.ExpireSigningKey(c, v, time.Now().Add(time.Hour)))
			if !tc.invalid {
				for range 3 { // insert, retire, expire
					expect(t, changes, store.Change{Kind: store.ChangeKeys}, time.Second)
				}
				valid++
			}
		})
	}

	// Nothing else changed: one row per valid value in every table.
	clients, err := s.ListClients(c)
	if err != nil || len(clients) != valid {
		t.Errorf("%d clients, want %d (%v)", len(clients), valid, err)
	}
	keys, err := s.ListAPIKeys(c, "")
	if err != nil || len(keys) != valid {
		t.Errorf("%d api keys, want %d (%v)", len(keys), valid, err)
	}
	sks, err := s.ListSigningKeys(c)
	if err != nil || len(sks) != valid {
		t.Errorf("%d signing keys, want %d (%v)", len(sks), valid, err)
	}
	jtis, err := s.RevokedSince(c, time.Time{})
	if err != nil || len(jtis) != valid {
		t.Errorf("%d revocations, want %d (%v)", len(jtis), valid, err)
	}
}

func quoteJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
