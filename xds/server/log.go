package server

import (
	"context"
	"fmt"
	"log/slog"
)

// cacheLogger routes go-control-plane's logs to slog. Its info and warning
// lines are routine (a stale nonce, an ADS request naming fewer resources
// than held while Envoy catches up), so they go to debug; its errors to warn.
type cacheLogger struct{ log *slog.Logger }

func (l cacheLogger) logf(level slog.Level, format string, args []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...), "component", "go-control-plane")
	}
}

func (l cacheLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args) }
func (l cacheLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args) }
func (l cacheLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelDebug, format, args) }
func (l cacheLogger) Errorf(format string, args ...any) { l.logf(slog.LevelWarn, format, args) }
