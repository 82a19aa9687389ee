package store_test

import (
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/store"
)

// TestClientTokenCutoff: rotating a client's secret and changing its
// enabled flag move TokensValidAfter to now(), in the store's own UPDATE,
// so that every caller ends the client's older tokens; other changes keep
// it.
func TestClientTokenCutoff(t *testing.T) {
	s, _ := newStore(t)
	c := ctx(t)
	if err := s.CreateClient(c, client("acme")); err != nil {
		t.Fatal(err)
	}
	cutoff := func() time.Time {
		t.Helper()
		got, err := s.GetClient(c, "acme")
		if err != nil {
			t.Fatal(err)
		}
		list, err := s.ListClients(c)
		if err != nil || len(list) != 1 || !list[0].TokensValidAfter.Equal(got.TokensValidAfter) {
			t.Fatalf("ListClients = %+v, %v; want the same cutoff as GetClient's %v", list, err, got.TokensValidAfter)
		}
		return got.TokensValidAfter
	}
	if cut := cutoff(); !cut.IsZero() {
		t.Fatalf("a new client has a cutoff: %v", cut)
	}
	update := func(fn func(cl *store.Client)) func() error {
		return func() error {
			cl, err := s.GetClient(c, "acme")
			if err != nil {
				return err
			}
			fn(cl)
			if err := s.UpdateClient(c, cl); err != nil {
				return err
			}
			if !cl.TokensValidAfter.Equal(cutoff()) {
				t.Errorf("UpdateClient wrote back cutoff %v, stored %v", cl.TokensValidAfter, cutoff())
			}
			return nil
		}
	}
	for _, step := range []struct {
		name  string
		do    func() error
		moves bool
	}{
		{"narrow scopes and models", update(func(cl *store.Client) { cl.Scopes, cl.Models = []string{"models:read"}, []string{"resnet"} }), false},
		{"rotate the secret", func() error { return s.SetClientSecret(c, "acme", []byte("new")) }, true},
		{"rename, still enabled", update(func(cl *store.Client) { cl.Name = "Acme" }), false},
		{"disable", update(func(cl *store.Client) { cl.Enabled = false }), true},
		{"change the plan while disabled", update(func(cl *store.Client) { cl.Plan = "gold" }), false},
		{"enable", update(func(cl *store.Client) { cl.Enabled = true }), true},
		{"rotate again", func() error { return s.SetClientSecret(c, "acme", []byte("newer")) }, true},
	} {
		before := cutoff()
		start := time.Now()
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		after := cutoff()
		switch {
		case !step.moves && !after.Equal(before):
			t.Errorf("%s moved the cutoff from %v to %v", step.name, before, after)
		case step.moves && (!after.After(before) || after.Before(start.Add(-time.Second)) || after.After(time.Now().Add(time.Second))):
			t.Errorf("%s: cutoff %v (before %v), want now (%v)", step.name, after, before, start)
		}
	}
}
