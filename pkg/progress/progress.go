// Package progress prints what a run is doing for the person watching it, as
// a log/slog handler: one line per record, "[host] message" when the record
// is about a host (its "host" attribute) and the bare message otherwise.
// Warnings read "warning: message", errors "error: message"; the record's
// other attributes follow the message as key=value. Lines are written whole,
// so that hosts worked on at once never mix within a line.
// It is a leaf: it imports nothing of etcdadm's.
package progress

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// HostKey is the attribute naming the host a record is about.
const HostKey = "host"

// New returns a logger that prints the records at level or above to w;
// a nil level means slog.LevelInfo, a nil w discards everything.
func New(w io.Writer, level slog.Leveler) *slog.Logger {
	if w == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(NewHandler(w, level))
}

// Handler is the slog.Handler New uses.
type Handler struct {
	out   *output
	level slog.Leveler
	host  string
	// attrs are the attributes of WithAttrs, already formatted.
	attrs string
	// group prefixes the keys of later attributes ("a.b.").
	group string
}

type output struct {
	mu sync.Mutex
	w  io.Writer
}

// NewHandler prints to w the records at level or above; a nil level means
// slog.LevelInfo.
func NewHandler(w io.Writer, level slog.Leveler) *Handler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &Handler{out: &output{w: w}, level: level}
}

// Enabled reports whether records of level l are printed.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// Handle prints one record as one line.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	host := h.host
	var attrs strings.Builder
	attrs.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		if h.group == "" && a.Key == HostKey {
			host = a.Value.Resolve().String()
			return true
		}
		appendAttr(&attrs, h.group, a)
		return true
	})
	var b strings.Builder
	if host != "" {
		b.WriteString("[" + host + "] ")
	}
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	}
	b.WriteString(r.Message)
	b.WriteString(attrs.String())
	b.WriteByte('\n')
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := io.WriteString(h.out.w, b.String())
	return err
}

// WithAttrs returns a handler that adds attrs to every record; a host among
// them becomes the line's prefix.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		if h.group == "" && a.Key == HostKey {
			c.host = a.Value.Resolve().String()
			continue
		}
		appendAttr(&b, h.group, a)
	}
	c.attrs = b.String()
	return &c
}

// WithGroup returns a handler whose later attributes' keys start with name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group = h.group + name + "."
	return &c
}

func appendAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			appendAttr(b, prefix, g)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(prefix + a.Key)
	b.WriteByte('=')
	b.WriteString(quote(formatValue(a.Value)))
}

func formatValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
	}
	return v.String()
}

// quote quotes s when it would not read as one value: empty, or holding
// spaces, quotes, '=' or control characters.
func quote(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || r == '"' || r == '=' || !unicode.IsPrint(r)
	}) {
		return strconv.Quote(s)
	}
	return s
}

// Quiet returns a logger that drops l's informational records unless l
// prints debug records: for commands whose output is all their data
// (status), where warnings still count but progress is noise, except when
// asked for with --verbose.
func Quiet(l *slog.Logger) *slog.Logger {
	return slog.New(quietHandler{l.Handler()})
}

type quietHandler struct{ slog.Handler }

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if !q.Handler.Enabled(ctx, l) {
		return false
	}
	return l < slog.LevelInfo || l >= slog.LevelWarn || q.Handler.Enabled(ctx, slog.LevelDebug)
}

func (q quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{q.Handler.WithAttrs(attrs)}
}

func (q quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{q.Handler.WithGroup(name)}
}
