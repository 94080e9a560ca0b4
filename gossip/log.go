package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// logWriter turns memberlist's log lines ("[ERR] memberlist: ...") into slog
// records at the matching level, so that refused joins (a wrong key, another
// cluster) show up as warnings in the agent's log, not as noise.
type logWriter struct {
	logger *slog.Logger
}

// newMemberlistLogger returns a *log.Logger for memberlist.Config.Logger.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(&logWriter{logger: l}, "", 0)
}

// Write implements io.Writer. It is called by log.Logger with one whole line
// per call, concurrently from memberlist's goroutines (log.Logger serialises).
func (w *logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{
		"[DEBUG]": slog.LevelDebug,
		"[INFO]":  slog.LevelInfo,
		"[WARN]":  slog.LevelWarn,
		"[ERR]":   slog.LevelWarn, // memberlist's errors are peers' problems, not ours: degraded, still working
	} {
		if strings.HasPrefix(line, prefix) {
			level = l
			line = strings.TrimSpace(strings.TrimPrefix(line, prefix))
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	// Classify the refusals that an operator must see. memberlist gives no
	// typed errors here, only log lines, so this reads its wording.
	attrs := []any{"detail", line}
	lower := strings.ToLower(line)
	reason := ""
	switch {
	case strings.Contains(lower, "no installed keys could decrypt"),
		strings.Contains(lower, "remote state is not encrypted"),
		strings.Contains(lower, "decrypt packet failed"):
		reason = "cluster key mismatch"
	case strings.Contains(lower, "unacceptable label"):
		reason = "another cluster"
	}
	if reason != "" {
		w.logger.Warn("gossip message refused", append(attrs, "reason", reason)...)
		return len(p), nil
	}
	w.logger.Log(context.Background(), level, "memberlist", attrs...)
	return len(p), nil
}
