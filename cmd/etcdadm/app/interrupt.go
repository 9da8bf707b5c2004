package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// interrupted is the cause of a run cancelled by a signal.
type interrupted struct{ sig os.Signal }

func (e *interrupted) Error() string { return fmt.Sprintf("cancelled (%v)", e.sig) }

// exitCode is the shell's for a process that a signal stopped: 130 for Ctrl-C.
func (e *interrupted) exitCode() int {
	if s, ok := e.sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 130
}

// interruptContext is signal.NotifyContext with a way out. The first SIGINT
// or SIGTERM cancels the context, with an *interrupted cause, and the run
// winds down: prompts return, connections close, nothing new starts. A
// second one puts the terminal back as it was and calls exit at once.
func interruptContext(parent context.Context, streams Streams, exit func(code int)) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	restore := saveTerminal(streams)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		var first *interrupted
		for {
			select {
			case <-done:
				return
			case sig := <-sigs:
				if first == nil {
					first = &interrupted{sig}
					// Said first, so that it comes before what the cancelled run prints.
					fmt.Fprintf(streams.ErrOut, "\n%v: cancelling the run; again to exit at once\n", sig)
					cancel(first)
					continue
				}
				restore()
				fmt.Fprintf(streams.ErrOut, "\n%v again: exiting\n", sig)
				exit(first.exitCode())
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// interruption returns the signal that cancelled ctx, if one did.
func interruption(ctx context.Context) *interrupted {
	var e *interrupted
	if errors.As(context.Cause(ctx), &e) {
		return e
	}
	return nil
}

// saveTerminal returns what puts standard input's terminal back as it is
// now; a prompt cut short by exiting must not leave echo off.
func saveTerminal(streams Streams) (restore func()) {
	in, ok := streams.In.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return func() {}
	}
	st, err := term.GetState(int(in.Fd()))
	if err != nil {
		return func() {}
	}
	return func() { _ = term.Restore(int(in.Fd()), st) }
}
