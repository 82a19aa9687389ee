package main

// The writes that measure the RPO: a new OAuth client every writeEvery
// through the admin API, each remembered with when it was sent and when
// helix-authz acknowledged it.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/helixflow/helixflow/extauthz/admin"
	"github.com/helixflow/helixflow/internal/samplemodel"
)

// write is one acknowledged write.
type write struct {
	seq        int
	id         string
	sent, ackd time.Time
}

type writer struct {
	mu      sync.Mutex
	writes  []write
	failed  int
	lastErr error
	stop    context.CancelFunc
	done    chan struct{}
}

// startWriter writes until stopWriter.
func startWriter(ctx context.Context, ac *admin.Client, every time.Duration) *writer {
	ctx, cancel := context.WithCancel(ctx)
	w := &writer{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(every)
		defer t.Stop()
		plan, scopes, models := "standard", []string{"models:infer"}, []string{samplemodel.Name}
		for seq := 0; ; seq++ {
			name := fmt.Sprintf("rpo-%05d", seq)
			sent := time.Now()
			v, err := ac.CreateClient(ctx, admin.ClientRequest{Name: &name, Plan: &plan, Scopes: &scopes, Models: &models})
			w.mu.Lock()
			if err == nil {
				w.writes = append(w.writes, write{seq: seq, id: v.ClientID, sent: sent, ackd: time.Now()})
			} else if ctx.Err() == nil {
				w.failed++
				w.lastErr = err
			}
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// stopWriter stops the writes and returns the acknowledged ones.
func (w *writer) stopWriter() ([]write, int, error) {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes, w.failed, w.lastErr
}

// rpoFigures sorts the acknowledged writes by where the restore must put
// them: acknowledged before the snapshot (must be there), sent after it
// (lost), or in flight across it (either).
type rpoFigures struct {
	kept, lost, straddling []write
}

func classify(writes []write, snapshot time.Time) rpoFigures {
	var f rpoFigures
	for _, w := range writes {
		switch {
		case w.ackd.Before(snapshot):
			f.kept = append(f.kept, w)
		case w.sent.After(snapshot):
			f.lost = append(f.lost, w)
		default:
			f.straddling = append(f.straddling, w)
		}
	}
	return f
}

// seqRange prints the sequence numbers of ws ("-" when none).
func seqRange(ws []write) string {
	switch len(ws) {
	case 0:
		return "-"
	case 1:
		return fmt.Sprintf("rpo-%05d", ws[0].seq)
	}
	return fmt.Sprintf("rpo-%05d..rpo-%05d", ws[0].seq, ws[len(ws)-1].seq)
}
