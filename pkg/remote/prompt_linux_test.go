package remote

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/ptytest"
)

func openPTY(t *testing.T) (control, tty *os.File) { return ptytest.Open(t) }

func echoOn(t *testing.T, tty *os.File) bool { return ptytest.EchoOn(t, tty) }

// waitEchoOff waits until a question has turned echo off.
func waitEchoOff(t *testing.T, tty *os.File) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); echoOn(t, tty); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("echo still on 5s after the question")
		}
	}
}

type secretRead struct {
	line []byte
	err  error
}

func readSecretAsync(ctx context.Context, term *Terminal, question string) <-chan secretRead {
	ch := make(chan secretRead, 1)
	go func() {
		line, err := term.ReadSecret(ctx, question)
		ch <- secretRead{line, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan secretRead) secretRead {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the question did not return within 5s")
		return secretRead{}
	}
}

func TestTerminalReadSecret(t *testing.T) {
	control, tty := openPTY(t)
	if NewTerminal(strings.NewReader("x\n"), os.Stderr) != nil {
		t.Fatal("a Terminal on a reader that is no terminal")
	}
	var out syncBuffer
	term := NewTerminal(tty, &out)
	if term == nil {
		t.Fatal("no Terminal on a pseudo-terminal")
	}

	ch := readSecretAsync(context.Background(), term, "Password for alice@db1")
	waitEchoOff(t, tty)
	if _, err := control.WriteString("s3cret\r"); err != nil {
		t.Fatal(err)
	}
	if r := wait(t, ch); r.err != nil || string(r.line) != "s3cret" {
		t.Errorf("answer = %q, %v; want s3cret", r.line, r.err)
	}
	if !echoOn(t, tty) {
		t.Error("echo still off after the answer")
	}
	if got := out.String(); got != "Password for alice@db1: \n" {
		t.Errorf("printed %q", got)
	}
}

// A question ends with its context, echo back on; the line typed next
// answers the next question.
func TestTerminalReadSecretCancelled(t *testing.T) {
	control, tty := openPTY(t)
	var out syncBuffer
	term := NewTerminal(tty, &out)

	ctx, cancel := context.WithCancel(context.Background())
	ch := readSecretAsync(ctx, term, "Passphrase for id_ed25519")
	waitEchoOff(t, tty)
	cancel()
	if r := wait(t, ch); !errors.Is(r.err, context.Canceled) || r.line != nil {
		t.Errorf("cancelled question = %q, %v; want context.Canceled", r.line, r.err)
	}
	if !echoOn(t, tty) {
		t.Error("echo left off by a cancelled question")
	}

	// A question in a context already done asks nothing.
	before := out.String()
	if _, err := term.ReadSecret(ctx, "Password"); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if out.String() != before {
		t.Errorf("printed %q after the run was cancelled", strings.TrimPrefix(out.String(), before))
	}

	ch = readSecretAsync(context.Background(), term, "Password")
	waitEchoOff(t, tty)
	if _, err := control.WriteString("next\r"); err != nil {
		t.Fatal(err)
	}
	if r := wait(t, ch); r.err != nil || string(r.line) != "next" {
		t.Errorf("answer = %q, %v; want next", r.line, r.err)
	}
	if !echoOn(t, tty) {
		t.Error("echo still off after the answer")
	}
}
