package hosts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// maxTracedCommand bounds the part of a command a trace line shows.
const maxTracedCommand = 80

// WithTrace logs, at debug level, every command run on t and every file
// read or written, with its duration: a command's first line, at most 80
// characters of it, and a file's path and size, never its contents, so that
// keys and other secrets stay out of the log.
func WithTrace(t remote.Transport, log *slog.Logger) remote.Transport {
	if log == nil {
		return t
	}
	return &traceTransport{Transport: t, log: log}
}

type traceTransport struct {
	remote.Transport
	log *slog.Logger
}

func (t *traceTransport) on(ctx context.Context) bool {
	return t.log.Enabled(ctx, slog.LevelDebug)
}

func (t *traceTransport) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	if !t.on(ctx) {
		return t.Transport.Run(ctx, cmd, stdin)
	}
	start := time.Now()
	out, err := t.Transport.Run(ctx, cmd, stdin)
	t.log.Debug("run", append(commandAttrs(cmd, start), failure(err)...)...)
	return out, err
}

func (t *traceTransport) Start(ctx context.Context, cmd string) (*remote.Process, error) {
	if !t.on(ctx) {
		return t.Transport.Start(ctx, cmd)
	}
	start := time.Now()
	p, err := t.Transport.Start(ctx, cmd)
	t.log.Debug("start", append(commandAttrs(cmd, start), failure(err)...)...)
	return p, err
}

func (t *traceTransport) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if !t.on(ctx) {
		return t.Transport.ReadFile(ctx, path)
	}
	start := time.Now()
	data, err := t.Transport.ReadFile(ctx, path)
	attrs := []any{"path", path, "bytes", len(data), "took", took(start)}
	if errors.Is(err, fs.ErrNotExist) {
		attrs = append(attrs, "missing", true)
	} else {
		attrs = append(attrs, failure(err)...)
	}
	t.log.Debug("read", attrs...)
	return data, err
}

func (t *traceTransport) WriteFile(ctx context.Context, f remote.File, backupDir string) (remote.WriteResult, error) {
	if !t.on(ctx) {
		return t.Transport.WriteFile(ctx, f, backupDir)
	}
	start := time.Now()
	res, err := t.Transport.WriteFile(ctx, f, backupDir)
	attrs := []any{"path", f.Path, "bytes", len(f.Data), "mode", fmt.Sprintf("%04o", f.Mode.Perm()), "took", took(start)}
	if err == nil {
		attrs = append(attrs, "action", string(res.Action))
		if res.BackupPath != "" {
			attrs = append(attrs, "backup", res.BackupPath)
		}
	}
	t.log.Debug("write", append(attrs, failure(err)...)...)
	return res, err
}

// commandAttrs show a command in short, how many lines its script has, and
// how long it took.
func commandAttrs(cmd string, start time.Time) []any {
	attrs := []any{"cmd", shortCommand(cmd)}
	if n := strings.Count(strings.TrimSpace(cmd), "\n") + 1; n > 1 {
		attrs = append(attrs, "lines", n)
	}
	return append(attrs, "took", took(start))
}

// shortCommand is the first line of cmd, at most 80 characters, with "…"
// when there is more.
func shortCommand(cmd string) string {
	cmd = strings.TrimSpace(cmd)
	line, rest, more := strings.Cut(cmd, "\n")
	line = strings.TrimSpace(line)
	if utf8.RuneCountInString(line) > maxTracedCommand {
		line = string([]rune(line)[:maxTracedCommand])
		more = true
	}
	if more || rest != "" {
		line += "…"
	}
	return line
}

// took rounds the time since start to what a person reads.
func took(start time.Time) time.Duration {
	d := time.Since(start)
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// failure says how an operation failed without its output: a command's
// exit status only, since its stderr comes back in the error anyway.
func failure(err error) []any {
	if err == nil {
		return nil
	}
	var ce *remote.CommandError
	if errors.As(err, &ce) && ce.ExitCode >= 0 {
		return []any{"exit", ce.ExitCode}
	}
	if ce != nil && ce.Err != nil {
		err = ce.Err
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return []any{"err", msg}
}
