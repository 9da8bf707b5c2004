package progress

import (
	"fmt"
	"log/slog"
)

// Log prints a run's progress through a slog.Logger: Host for a line about
// one host ("[host] message" with this package's handler), Printf for one
// about the run, Warn for a warning about a host.
type Log struct{ l *slog.Logger }

// NewLog prints through l; nil discards.
func NewLog(l *slog.Logger) *Log {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Log{l: l}
}

// Logger is the logger Log prints through.
func (l *Log) Logger() *slog.Logger { return l.l }

// Host prints one line about a host.
func (l *Log) Host(host, format string, args ...any) {
	l.l.Info(fmt.Sprintf(format, args...), HostKey, host)
}

// Warn prints a warning about a host.
func (l *Log) Warn(host, format string, args ...any) {
	l.l.Warn(fmt.Sprintf(format, args...), HostKey, host)
}

// Printf prints one line about the run.
func (l *Log) Printf(format string, args ...any) {
	l.l.Info(fmt.Sprintf(format, args...))
}
