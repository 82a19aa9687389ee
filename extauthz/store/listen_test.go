package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/extauthz/store"
)

// listen runs s.Listen until the test ends and returns its changes.
func listen(t *testing.T, s *store.Store) <-chan store.Change {
	t.Helper()
	ch := make(chan store.Change, 100)
	lctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.Listen(lctx, func(c store.Change) { ch <- c }); err != nil {
			t.Errorf("Listen: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ch
}

func expect(t *testing.T, ch <-chan store.Change, want store.Change, within time.Duration) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("change %+v, want %+v", got, want)
		}
	case <-time.After(within):
		t.Fatalf("no change %+v within %s", want, within)
	}
}

func TestListen(t *testing.T) {
	s, dsn := newStore(t)
	c := ctx(t)
	ch := listen(t, s)
	expect(t, ch, store.Change{Kind: store.ChangeResync}, 5*time.Second)

	steps := []struct {
		name  string
		write func() error
		want  store.Change
	}{
		{"create client", func() error { return s.CreateClient(c, client("c1")) }, store.Change{Kind: store.ChangeClient, ID: "c1"}},
		{"update client", func() error { return s.UpdateClient(c, client("c1")) }, store.Change{Kind: store.ChangeClient, ID: "c1"}},
		{"set secret", func() error { return s.SetClientSecret(c, "c1", []byte("x")) }, store.Change{Kind: store.ChangeClient, ID: "c1"}},
		{"create api key", func() error { return s.CreateAPIKey(c, apiKey("k1", "hx_1", "c1")) }, store.Change{Kind: store.ChangeAPIKey, ID: "hx_1"}},
		{"revoke api key", func() error { return s.RevokeAPIKey(c, "k1") }, store.Change{Kind: store.ChangeAPIKey, ID: "hx_1"}},
		{"revoke token", func() error { return s.RevokeToken(c, "jti-1", time.Now().Add(time.Hour)) }, store.Change{Kind: store.ChangeRevoked, ID: "jti-1"}},
		{"insert signing key", func() error {
			return s.InsertSigningKey(c, &store.SigningKey{KID: "kid1", Alg: "ES256", PublicJWK: []byte(`{}`), PrivateSealed: []byte{1}})
		}, store.Change{Kind: store.ChangeKeys}},
		{"retire signing key", func() error { return s.RetireSigningKey(c, "kid1", time.Now()) }, store.Change{Kind: store.ChangeKeys}},
		{"expire signing key", func() error { return s.ExpireSigningKey(c, "kid1", time.Now().Add(-time.Second)) }, store.Change{Kind: store.ChangeKeys}},
		{"delete signing keys", func() error { _, err := s.DeleteExpiredSigningKeys(c, time.Now()); return err }, store.Change{Kind: store.ChangeKeys}},
		{"create api key 2", func() error { return s.CreateAPIKey(c, apiKey("k2", "hx_2", "c1")) }, store.Change{Kind: store.ChangeAPIKey, ID: "hx_2"}},
		{"mark", func() error { return s.Mark(c, "m-1") }, store.Change{Kind: store.ChangeMark, ID: "m-1"}},
		// Usage bookkeeping is silent: the next changes seen are the
		// client's deletion and, cascaded, its key's.
		{"record use, delete client", func() error {
			if err := s.RecordAPIKeyUse(c, "hx_2", time.Now(), 5); err != nil {
				return err
			}
			return s.DeleteClient(c, "c1")
		}, store.Change{Kind: store.ChangeClient, ID: "c1"}},
	}
	for _, st := range steps {
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		// Within 1 s of the write, as replicas are promised.
		expect(t, ch, st.want, time.Second)
	}
	// Both keys went with the client, in no promised order.
	got := map[store.Change]bool{}
	for range 2 {
		select {
		case ch := <-ch:
			got[ch] = true
		case <-time.After(time.Second):
		}
	}
	if !got[store.Change{Kind: store.ChangeAPIKey, ID: "hx_1"}] || !got[store.Change{Kind: store.ChangeAPIKey, ID: "hx_2"}] {
		t.Fatalf("cascaded key deletions: %v", got)
	}

	// Unknown kinds and malformed payloads are dropped.
	conn, err := pgx.Connect(c, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(c)
	for _, p := range []string{"bogus:1", "no colon", ""} {
		if _, err := conn.Exec(c, "SELECT pg_notify($1, $2)", store.Channel, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RevokeToken(c, "jti-2", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, store.Change{Kind: store.ChangeRevoked, ID: "jti-2"}, time.Second)

	// Kill the listener's connection: it comes back and asks for a resync.
	var killed int
	if err := conn.QueryRow(c, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, store.ListenerApplicationName).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d listener connections, want 1", killed)
	}
	expect(t, ch, store.Change{Kind: store.ChangeResync}, 3*time.Second)
	if err := s.RevokeToken(c, "jti-3", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, store.Change{Kind: store.ChangeRevoked, ID: "jti-3"}, time.Second)

	select {
	case extra := <-ch:
		t.Errorf("unexpected change %+v", extra)
	case <-time.After(100 * time.Millisecond):
	}
}

// Listen ends when its context ends, and when the store is closed.
func TestListenStops(t *testing.T) {
	s, _ := newStore(t)
	lctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	resync := make(chan struct{}, 1)
	go func() {
		done <- s.Listen(lctx, func(c store.Change) {
			if c.Kind == store.ChangeResync {
				resync <- struct{}{}
			}
		})
	}()
	<-resync
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Listen after cancel: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Listen did not return after its context ended")
	}

	go func() { done <- s.Listen(context.Background(), func(store.Change) {}) }()
	time.Sleep(100 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Listen after Close: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Listen did not return after Close")
	}
	if err := s.Listen(context.Background(), nil); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("nil callback: %v", err)
	}
}
