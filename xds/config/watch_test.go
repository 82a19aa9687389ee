package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeAtomic replaces path the way an operator or a ConfigMap does.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	writeAtomic(t, path, base)

	changes := make(chan *Config, 10)
	errs := make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- WatchEvery(ctx, path, 10*time.Millisecond, func(c *Config) { changes <- c }, func(err error) { errs <- err })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v, want context.Canceled", err)
		}
	})

	next := func() *Config {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case err := <-errs:
			t.Fatalf("unexpected error: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no change reported")
		}
		return nil
	}
	nextErr := func() error {
		t.Helper()
		select {
		case c := <-changes:
			t.Fatalf("unexpected change: %+v", c)
		case err := <-errs:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("no error reported")
		}
		return nil
	}
	quiet := func() {
		t.Helper()
		select {
		case c := <-changes:
			t.Fatalf("unexpected change: %+v", c)
		case err := <-errs:
			t.Fatalf("unexpected error: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	if c := next(); c.Listener.Port != 8443 {
		t.Fatalf("first config port = %d", c.Listener.Port)
	}

	// A bad file: reported once, no change, the last good config stays.
	writeAtomic(t, path, strings.Replace(base, "8443", "0", 1))
	if err := nextErr(); !strings.Contains(err.Error(), "listener.port") {
		t.Fatalf("error = %v", err)
	}
	quiet()

	// A good one again: handed over.
	writeAtomic(t, path, strings.Replace(base, "8443", "9443", 1))
	if c := next(); c.Listener.Port != 9443 {
		t.Fatalf("new config port = %d", c.Listener.Port)
	}

	// Touched, same content: nothing.
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	quiet()

	// Removed: one error, then silence; back: handed over.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := nextErr(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("error = %v", err)
	}
	quiet()
	writeAtomic(t, path, strings.Replace(base, "8443", "7443", 1))
	if c := next(); c.Listener.Port != 7443 {
		t.Fatalf("restored config port = %d", c.Listener.Port)
	}
}

func TestWatchStartsWithBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	writeAtomic(t, path, "listener: {bogus: 1}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var changes, errs int
	err := WatchEvery(ctx, path, 10*time.Millisecond, func(*Config) { changes++ }, func(error) { errs++ })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch returned %v", err)
	}
	if changes != 0 || errs != 1 {
		t.Fatalf("changes=%d errors=%d, want 0 and 1", changes, errs)
	}
}
