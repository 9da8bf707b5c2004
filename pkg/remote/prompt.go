package remote

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/term"
)

// Terminal asks the user questions on a terminal. A question ends when its
// context does, with the terminal as it was: a Ctrl-C at a prompt cancels
// the run instead of waiting for Enter, and leaves echo on.
type Terminal struct {
	in  *os.File
	out io.Writer

	mu sync.Mutex // one question at a time
	// pending is the read of a cancelled question, still waiting for a line:
	// the next question takes it over rather than racing it for the input.
	pending chan lineRead
}

type lineRead struct {
	line []byte
	err  error
}

// NewTerminal returns a Terminal that reads in and writes its questions to
// out, or nil when in is not a terminal.
func NewTerminal(in io.Reader, out io.Writer) *Terminal {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &Terminal{in: f, out: out}
}

// ReadSecret asks question and reads the answer without echoing it. It
// returns ctx's error as soon as ctx is done, echo restored.
func (t *Terminal) ReadSecret(ctx context.Context, question string) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fmt.Fprintf(t.out, "%s: ", question)
	// The answer's Enter is not echoed either.
	defer fmt.Fprintln(t.out)
	line, err := t.readSecret(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the answer to %q: %w", question, err)
	}
	return line, nil
}

// readLine waits for a line from the terminal, or for ctx. The read itself
// cannot be interrupted: a cancelled one is left to the next question.
func (t *Terminal) readLine(ctx context.Context) ([]byte, error) {
	return t.await(ctx, func() ([]byte, error) { return scanLine(t.in) })
}

// await runs read in the background, unless the read of a cancelled
// question is still waiting, and waits for its line or for ctx to end; a
// read that ctx ended is left pending for the next question.
func (t *Terminal) await(ctx context.Context, read func() ([]byte, error)) ([]byte, error) {
	if t.pending == nil {
		ch := make(chan lineRead, 1)
		go func() {
			line, err := read()
			ch <- lineRead{line, err}
		}()
		t.pending = ch
	}
	select {
	case r := <-t.pending:
		t.pending = nil
		return r.line, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// scanLine reads up to a newline, a byte at a time so that nothing after
// it is consumed. The terminal driver has already applied the user's edits.
func scanLine(r io.Reader) ([]byte, error) {
	var line []byte
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n > 0 {
			switch b[0] {
			case '\n':
				return line, nil
			case '\r':
			default:
				line = append(line, b[0])
			}
			continue
		}
		if err == io.EOF && len(line) > 0 {
			return line, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
