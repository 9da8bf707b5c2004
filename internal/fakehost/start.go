package fakehost

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"

	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// errKilled is how a process killed by remote.Process.Close ends.
var errKilled = errors.New("signal: killed")

// Start records cmd and runs the handler that matches it in the background,
// behind a remote.Process: the process's Stdin is the handler's stdin, the
// handler's stdout is the process's Stdout, and the process ends when the
// handler returns. Closing the process ends the handler's input, then, if
// it does not return within the real transports' grace time, cancels its
// context. ctx is not the process's lifetime, as with the real transports.
func (h *Host) Start(ctx context.Context, cmd string) (*remote.Process, error) {
	fn, ok := pick(h, &h.starts, Call{Cmd: cmd, Start: true})
	err := h.enter(ctx)
	if err == nil && !ok {
		err = ErrUnhandled
	}
	if err != nil {
		return nil, h.commandError(cmd, err)
	}
	pctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	p := &process{stdin: newPipe(), stdout: newPipe(), cancel: cancel, done: make(chan struct{})}
	h.mu.Lock()
	if err := h.down(); err != nil {
		h.mu.Unlock()
		cancel(nil)
		return nil, h.commandError(cmd, err)
	}
	h.procs[p] = struct{}{}
	h.mu.Unlock()

	go func() {
		p.err = fn(pctx, cmd, pipeReader{p.stdin}, pipeWriter{p.stdout})
		cancel(nil)
		p.stdout.closeWrite(nil)
		p.stdin.closeRead()
		h.mu.Lock()
		delete(h.procs, p)
		h.mu.Unlock()
		close(p.done)
	}()
	wait := func() error {
		<-p.done
		if cause := p.ended(); cause != nil {
			return h.commandError(cmd, cause)
		}
		if p.err != nil {
			return h.commandError(cmd, p.err)
		}
		return nil
	}
	return remote.NewProcess(pipeWriter{p.stdin}, pipeReader{p.stdout}, wait, func() { p.end(errKilled) }), nil
}

// process is a command given to Start, run by its handler.
type process struct {
	stdin, stdout *pipe
	cancel        context.CancelCauseFunc
	done          chan struct{}
	err           error // the handler's, set before done is closed

	mu    sync.Mutex
	cause error // why the process was ended from outside
}

// end ends the process from outside, for cause: the caller reads what was
// written, then cause; the handler's input ends and its context is
// cancelled. In that order, so that a handler that returns at once cannot
// end the output cleanly first.
func (p *process) end(cause error) {
	select {
	case <-p.done:
		return
	default:
	}
	p.mu.Lock()
	if p.cause == nil {
		p.cause = cause
	}
	p.mu.Unlock()
	p.stdout.closeWrite(cause)
	p.stdin.closeWrite(nil)
	p.cancel(cause)
}

func (p *process) ended() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cause
}

// pipe carries bytes from a writer to a reader. Unlike io.Pipe it buffers
// without bound, as a real pipe's buffer does for the little that tests
// write, so that a writer never waits for a reader.
type pipe struct {
	mu   sync.Mutex
	more *sync.Cond
	buf  bytes.Buffer
	// werr is set once the writer is done: reads return it once the
	// buffer is empty.
	werr error
	// rclosed is set once the reader is gone: writes fail.
	rclosed bool
}

func newPipe() *pipe {
	p := &pipe{}
	p.more = sync.NewCond(&p.mu)
	return p
}

func (p *pipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.buf.Len() == 0 && p.werr == nil {
		p.more.Wait()
	}
	if p.buf.Len() > 0 {
		return p.buf.Read(b)
	}
	return 0, p.werr
}

func (p *pipe) write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rclosed || p.werr != nil {
		return 0, io.ErrClosedPipe
	}
	p.more.Broadcast()
	return p.buf.Write(b)
}

// closeWrite ends the data with err, io.EOF when nil; the first call wins.
func (p *pipe) closeWrite(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		err = io.EOF
	}
	if p.werr == nil {
		p.werr = err
	}
	p.more.Broadcast()
}

// closeRead makes later writes fail: nothing reads them any more.
func (p *pipe) closeRead() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rclosed = true
}

type pipeReader struct{ p *pipe }

func (r pipeReader) Read(b []byte) (int, error) { return r.p.read(b) }

type pipeWriter struct{ p *pipe }

func (w pipeWriter) Write(b []byte) (int, error) { return w.p.write(b) }

// Close ends the data: the reader gets io.EOF once it has read it.
func (w pipeWriter) Close() error {
	w.p.closeWrite(nil)
	return nil
}
