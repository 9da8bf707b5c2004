package fakehost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// Match selects the commands a handler answers.
type Match func(cmd string) bool

// Contains matches the commands that hold s.
func Contains(s string) Match { return func(cmd string) bool { return strings.Contains(cmd, s) } }

// Exact matches the command s only.
func Exact(s string) Match { return func(cmd string) bool { return cmd == s } }

// Regexp matches the commands re matches, anywhere unless it is anchored.
func Regexp(re *regexp.Regexp) Match { return re.MatchString }

// Handler answers a command given to Run: it returns the command's stdout
// and, when the command fails, an error: Exit for an exit status, any
// other for a command that did not exit by itself. stdin holds what Run was
// given, or nothing. A handler that blocks must return once ctx ends; ctx
// also ends when the host is disconnected or closed.
type Handler func(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error)

// StartHandler runs a command given to Start, for as long as it does not
// return: it reads the process's input from stdin, which ends when the
// caller closes it or the connection is lost, and writes the process's
// output to stdout as it goes. Its error is what the process's Wait
// reports, as for Handler. ctx ends when the process is killed or the
// connection is lost.
type StartHandler func(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error

type route[F any] struct {
	match Match
	fn    F
}

// Handle makes fn answer the commands m matches that are given to Run.
// Among the handlers that match a command, the one registered last answers
// it, so that a test may override a broad handler with a narrower one.
func (h *Host) Handle(m Match, fn Handler) {
	if m == nil || fn == nil {
		panic("fakehost: Handle needs a Match and a Handler")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs = append(h.runs, route[Handler]{m, fn})
}

// HandleStart makes fn run the commands m matches that are given to Start,
// with the same precedence as Handle. Run and Start have separate handlers.
func (h *Host) HandleStart(m Match, fn StartHandler) {
	if m == nil || fn == nil {
		panic("fakehost: HandleStart needs a Match and a StartHandler")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.starts = append(h.starts, route[StartHandler]{m, fn})
}

// exitError is a command that exited with a status other than 0.
type exitError struct {
	code   int
	stderr string
}

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Exit is what a handler returns for a command that exits with code (1 to
// 255) and prints stderr: the caller gets a *remote.CommandError holding
// both, as from a real host.
func Exit(code int, stderr string) error {
	if code < 1 || code > 255 {
		panic(fmt.Sprintf("fakehost: exit status %d is not a failure", code))
	}
	return &exitError{code: code, stderr: stderr}
}

// Reply is a Handler whose command prints stdout and succeeds.
func Reply(stdout string) Handler {
	return func(context.Context, string, io.Reader) ([]byte, error) { return []byte(stdout), nil }
}

// Fail is a Handler whose command exits with code after printing stderr.
func Fail(code int, stderr string) Handler {
	err := Exit(code, stderr)
	return func(context.Context, string, io.Reader) ([]byte, error) { return nil, err }
}

// Call is one command given to the host.
type Call struct {
	Cmd string
	// Stdin is what Run was given to read; nil when it was given no reader.
	Stdin []byte
	// Start is set for Start, whose input is not recorded.
	Start bool
}

// Calls returns the commands given to Run and Start, in order.
func (h *Host) Calls() []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Call, len(h.calls))
	for i, c := range h.calls {
		out[i] = Call{Cmd: c.Cmd, Stdin: bytes.Clone(c.Stdin), Start: c.Start}
	}
	return out
}

// Commands returns the command lines of Calls.
func (h *Host) Commands() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, len(h.calls))
	for i, c := range h.calls {
		out[i] = c.Cmd
	}
	return out
}

// Unhandled returns the commands no handler answered, in order. A test
// that registers handlers for everything it expects asserts it is empty.
func (h *Host) Unhandled() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.unhandled...)
}

// pick records c and returns the handler that answers it; ok is false, and
// c is kept as unhandled, when there is none.
func pick[F any](h *Host, routes *[]route[F], c Call) (fn F, ok bool) {
	h.mu.Lock()
	h.calls = append(h.calls, c)
	rs := *routes
	h.mu.Unlock()
	// Matched unlocked: a Match is the test's code.
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].match(c.Cmd) {
			return rs[i].fn, true
		}
	}
	h.mu.Lock()
	h.unhandled = append(h.unhandled, c.Cmd)
	h.mu.Unlock()
	return fn, false
}

// commandError is err as the real transports report a failed command.
func (h *Host) commandError(cmd string, err error) *remote.CommandError {
	if ce, ok := errors.AsType[*remote.CommandError](err); ok {
		return ce
	}
	if ee, ok := errors.AsType[*exitError](err); ok {
		return &remote.CommandError{Host: h.name, Cmd: cmd, ExitCode: ee.code, Stderr: ee.stderr, Err: ee}
	}
	return &remote.CommandError{Host: h.name, Cmd: cmd, ExitCode: -1, Err: err}
}

// Run records cmd with its stdin, read whole first, and returns what the
// handler that matches it returns. A command without a handler fails with
// ErrUnhandled; a command running when the connection is lost fails with
// ErrDisconnected, whatever its handler returns.
func (h *Host) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	var in []byte
	var err error
	if stdin != nil {
		if in, err = io.ReadAll(stdin); err != nil {
			err = fmt.Errorf("read stdin: %w", err)
		} else if in == nil {
			in = []byte{}
		}
	}
	fn, ok := pick(h, &h.runs, Call{Cmd: cmd, Stdin: in})
	if err == nil {
		err = h.enter(ctx)
	}
	if err == nil && !ok {
		err = ErrUnhandled
	}
	if err != nil {
		return nil, h.commandError(cmd, err)
	}

	hctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(h.life, func() { cancel(context.Cause(h.life)) })
	out, err := fn(hctx, cmd, bytes.NewReader(in))
	lost := !stop()
	cancel(nil)
	if lost {
		// The exit status never reached the caller.
		return nil, h.commandError(cmd, context.Cause(h.life))
	}
	if err == nil {
		return out, nil
	}
	ce := h.commandError(cmd, err)
	if ctx.Err() != nil {
		ce.ExitCode, ce.Err = -1, ctx.Err()
	}
	return out, ce
}
