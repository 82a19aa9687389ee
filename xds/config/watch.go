package config

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"
)

// WatchInterval is how often Watch looks at the file.
const WatchInterval = time.Second

// Watch loads the config file at path, hands it to onChange, then polls
// the file every WatchInterval (modification time, size and identity; on
// a change, a SHA-256 of the content) and hands over each new good config.
// A file that fails to load or validate goes to onError once per distinct
// content or error, and onChange is not called: the last good config
// stays in force. The callbacks run on Watch's goroutine, one at a time.
// Watch returns ctx.Err() when ctx is done.
func Watch(ctx context.Context, path string, onChange func(*Config), onError func(error)) error {
	return WatchEvery(ctx, path, WatchInterval, onChange, onError)
}

// WatchEvery is Watch with another polling interval (tests use a short
// one).
func WatchEvery(ctx context.Context, path string, every time.Duration, onChange func(*Config), onError func(error)) error {
	w := &watcher{path: path, onChange: onChange, onError: onError}
	w.poll()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			w.poll()
		}
	}
}

type watcher struct {
	path     string
	onChange func(*Config)
	onError  func(error)

	stat    os.FileInfo // of the content last hashed
	hash    [sha256.Size]byte
	hashed  bool
	lastErr string // last reported error that had no content (stat/read)
}

func (w *watcher) poll() {
	fi, err := os.Stat(w.path)
	if err != nil {
		w.fail(fmt.Errorf("gateway config: %w", err))
		return
	}
	if w.stat != nil && os.SameFile(w.stat, fi) && fi.ModTime().Equal(w.stat.ModTime()) && fi.Size() == w.stat.Size() {
		return
	}
	data, err := readLimited(w.path)
	if err != nil {
		w.fail(err)
		return
	}
	w.lastErr = ""
	w.stat = fi
	sum := sha256.Sum256(data)
	if w.hashed && sum == w.hash {
		return // touched, not changed (or changed back to what we saw last)
	}
	w.hash, w.hashed = sum, true
	c, err := Parse(data, w.path)
	if err != nil {
		w.onError(err)
		return
	}
	w.onChange(c)
}

// fail reports an error that is not about content once, until it changes.
func (w *watcher) fail(err error) {
	w.stat = nil
	if err.Error() == w.lastErr {
		return
	}
	w.lastErr = err.Error()
	w.onError(err)
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("gateway config: read %s: %w", path, err)
	}
	return data, nil
}
