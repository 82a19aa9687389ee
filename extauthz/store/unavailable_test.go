package store_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/store"
	"github.com/helixflow/helixflow/internal/pgtest"
)

// With Postgres gone, every call fails with ErrUnavailable within the
// query timeout: no hang, and never a result that could let a caller
// fail open.
func TestUnavailableAfterServerStops(t *testing.T) {
	srv := pgtest.StartServer(t)
	dsn := pgtest.NewDatabase(t, srv.DSN())
	migrate(t, dsn)
	const timeout = 500 * time.Millisecond
	s := open(t, dsn, store.Config{QueryTimeout: timeout, ConnectTimeout: 200 * time.Millisecond})
	c := ctx(t)
	if err := s.CreateClient(c, client("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(c, "j", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}

	calls := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return s.Ping(c) }},
		{"GetClient", func() error { _, err := s.GetClient(c, "a"); return err }},
		{"ListClients", func() error { _, err := s.ListClients(c); return err }},
		{"CreateClient", func() error { return s.CreateClient(c, client("b")) }},
		{"IsRevoked", func() error { _, err := s.IsRevoked(c, "j"); return err }},
		{"GetAPIKeyByPrefix", func() error { _, err := s.GetAPIKeyByPrefix(c, "p"); return err }},
		{"RecordAPIKeyUse", func() error { return s.RecordAPIKeyUse(c, "p", time.Now(), 1) }},
		{"ListSigningKeys", func() error { _, err := s.ListSigningKeys(c); return err }},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.call()
			took := time.Since(start)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("error %v, want ErrUnavailable", err)
			}
			if took > timeout+300*time.Millisecond {
				t.Errorf("took %s, want within the query timeout %s", took, timeout)
			}
		})
	}

	// A caller that gives up gets its own error back, not ErrUnavailable.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.GetClient(cancelled, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}

	// Opening a store on a server that is gone fails the same way.
	start := time.Now()
	_, err := store.Open(c, store.Config{DSN: dsn, QueryTimeout: timeout, ConnectTimeout: 200 * time.Millisecond, Logger: quiet})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > timeout+300*time.Millisecond {
		t.Errorf("Open took %s", took)
	}
}

func TestOpenRejectsBadDSN(t *testing.T) {
	_, err := store.Open(context.Background(), store.Config{DSN: "postgres://u:secretpw@[::1/x?bad=%zz"})
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("Open: %v, want ErrInvalid", err)
	}
	if got := err.Error(); strings.Contains(got, "secretpw") {
		t.Errorf("error quotes the password: %s", got)
	}
}

// freezer forwards TCP to target until frozen; then it holds every byte,
// like a database that stopped answering without closing connections.
type freezer struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, up)
			mu.Unlock()
			conns.Add(2)
			go func() { defer conns.Done(); f.pipe(up, c) }()
			go func() { defer conns.Done(); f.pipe(c, up) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	// One side gone: close both, as a TCP proxy would.
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		for f.frozen.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

// A database that stops answering (no refused connection, no reset) must
// not hang callers past the query timeout.
func TestUnavailableWhenServerHangs(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	migrate(t, dsn)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	f := newFreezer(t, u.Host)
	u.Host = f.addr()
	const timeout = 400 * time.Millisecond
	s := open(t, u.String(), store.Config{QueryTimeout: timeout, ConnectTimeout: 200 * time.Millisecond})
	c := ctx(t)
	if err := s.CreateClient(c, client("a")); err != nil {
		t.Fatal(err)
	}
	f.frozen.Store(true)
	defer f.frozen.Store(false)
	for _, name := range []string{"GetClient", "IsRevoked", "Ping"} {
		start := time.Now()
		switch name {
		case "GetClient":
			_, err = s.GetClient(c, "a")
		case "IsRevoked":
			_, err = s.IsRevoked(c, "j")
		case "Ping":
			err = s.Ping(c)
		}
		took := time.Since(start)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
		if took > timeout+300*time.Millisecond {
			t.Errorf("%s took %s, want within the query timeout %s", name, took, timeout)
		}
	}
}

// A database that refuses us (wrong password) is unavailable too, and the
// error does not quote the password.
func TestOpenWrongPassword(t *testing.T) {
	u, err := url.Parse(pgtest.StartShared(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(pgtest.Superuser, "not-the-password-x")
	_, err = store.Open(ctx(t), store.Config{DSN: u.String(), Logger: quiet})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open: %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "not-the-password-x") {
		t.Errorf("error quotes the password: %v", err)
	}
}

// A listener whose server stops answering without closing the connection
// notices through its keepalive, reconnects and asks for a resync.
func TestListenNoticesSilentServer(t *testing.T) {
	dsn := pgtest.NewDatabase(t, pgtest.StartShared(t))
	migrate(t, dsn)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	f := newFreezer(t, u.Host)
	u.Host = f.addr()
	s := open(t, u.String(), store.Config{QueryTimeout: 300 * time.Millisecond, ListenKeepalive: 300 * time.Millisecond})
	ch := listen(t, s)
	expect(t, ch, store.Change{Kind: store.ChangeResync}, 5*time.Second)

	f.frozen.Store(true)
	time.Sleep(time.Second) // past keepalive + ping timeout
	f.frozen.Store(false)
	expect(t, ch, store.Change{Kind: store.ChangeResync}, 5*time.Second)
	if err := s.RevokeToken(ctx(t), "j", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, store.Change{Kind: store.ChangeRevoked, ID: "j"}, time.Second)
}
