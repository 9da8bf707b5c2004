package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// A confirmation nobody answers ends with the run: Ctrl-C at the question
// cancels, and nothing is taken as a yes.
func TestConfirmEndsWithTheRun(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	var errOut bytes.Buffer
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		ok, err := confirm(ctx, Streams{In: r, ErrOut: &errOut}, "restore?")
		if ok {
			err = errors.New("confirmed")
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel(errors.New("cancelled (interrupt)"))
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "cancelled (interrupt)") || !strings.Contains(err.Error(), "nothing changed") {
			t.Fatalf("err %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the question outlived the run")
	}
}

func TestConfirmAnswers(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "yes\n": true, "YES\n": true, "n\n": false, "\n": false, "sure\n": false} {
		ok, err := confirm(context.Background(), Streams{In: strings.NewReader(in), ErrOut: io.Discard}, "q?")
		if err != nil || ok != want {
			t.Errorf("%q: %v %v, want %v", in, ok, err, want)
		}
	}
}
