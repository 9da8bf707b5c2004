package fakehost_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// echo prints "started", then echoes its input line by line until it ends.
func echo(_ context.Context, _ string, stdin io.Reader, stdout io.Writer) error {
	fmt.Fprintln(stdout, "started")
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		fmt.Fprintln(stdout, "echo", sc.Text())
	}
	return nil
}

func waitDone(t *testing.T, p *remote.Process) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the process did not end")
		return nil
	}
}

func TestStartAndClose(t *testing.T) {
	h := fakehost.New("node-1")
	h.HandleStart(fakehost.Contains("exec cat"), echo)
	p, err := h.Start(context.Background(), "echo started; exec cat")
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(p.Stdout)
	if line, err := r.ReadString('\n'); err != nil || line != "started\n" {
		t.Errorf("read %q, %v", line, err)
	}
	if _, err := io.WriteString(p.Stdin, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "echo ping\n" {
		t.Errorf("read %q, %v", line, err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Errorf("after the end: %q, %v", rest, err)
	}
	if _, err := io.WriteString(p.Stdin, "late\n"); err == nil {
		t.Error("writing to an ended process succeeded")
	}
	if c := h.Calls(); len(c) != 1 || !c[0].Start || c[0].Cmd != "echo started; exec cat" {
		t.Errorf("calls = %+v", c)
	}
	if _, err := h.Run(context.Background(), "echo started; exec cat", nil); !errors.Is(err, fakehost.ErrUnhandled) {
		t.Errorf("a Start handler answered Run: %v", err)
	}
}

// The process ends as its handler returns, with its exit status.
func TestStartedProcessFails(t *testing.T) {
	h := fakehost.New("node-1")
	h.HandleStart(fakehost.Contains("flock"), func(_ context.Context, _ string, _ io.Reader, stdout io.Writer) error {
		fmt.Fprintln(stdout, "locked run A")
		return fakehost.Exit(75, "")
	})
	p, err := h.Start(context.Background(), "flock -n 9")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := io.ReadAll(p.Stdout); err != nil || string(out) != "locked run A\n" {
		t.Errorf("output %q, %v", out, err)
	}
	err = waitDone(t, p)
	if ce, ok := errors.AsType[*remote.CommandError](err); !ok || ce.ExitCode != 75 || ce.Host != "node-1" || ce.Cmd != "flock -n 9" {
		t.Errorf("Wait = %v, want exit status 75", err)
	}
	if err := p.Close(); err == nil {
		t.Error("Close of a failed process reports no error")
	}
}

// A process that ignores its input's end is killed after the grace time.
func TestCloseKillsProcessIgnoringInput(t *testing.T) {
	if testing.Short() {
		t.Skip("waits the 5s grace time")
	}
	h := fakehost.New("node-1")
	h.HandleStart(fakehost.Exact("trap '' HUP; sleep 1000"), func(ctx context.Context, _ string, _ io.Reader, _ io.Writer) error {
		<-ctx.Done()
		return ctx.Err()
	})
	p, err := h.Start(context.Background(), "trap '' HUP; sleep 1000")
	if err != nil {
		t.Fatal(err)
	}
	err = p.Close()
	if ce, ok := errors.AsType[*remote.CommandError](err); !ok || ce.ExitCode != -1 || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Close = %v, want a killed command", err)
	}
}

func TestDisconnect(t *testing.T) {
	h := fakehost.New("node-1")
	ctx := context.Background()
	inputEnded := make(chan struct{})
	h.HandleStart(fakehost.Contains("exec cat"), func(ctx context.Context, cmd string, stdin io.Reader, stdout io.Writer) error {
		err := echo(ctx, cmd, stdin, stdout)
		close(inputEnded)
		return err
	})
	running := make(chan struct{})
	h.Handle(fakehost.Exact("etcdctl snapshot save"), func(ctx context.Context, _ string, _ io.Reader) ([]byte, error) {
		close(running)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	h.Handle(fakehost.Exact("true"), fakehost.Reply(""))
	h.PutFile("/etc/x", []byte("x"), 0o600)

	p, err := h.Start(ctx, "exec cat")
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(p.Stdout)
	if line, _ := r.ReadString('\n'); line != "started\n" {
		t.Fatalf("read %q", line)
	}
	runErr := make(chan error, 1)
	go func() {
		_, err := h.Run(ctx, "etcdctl snapshot save", nil)
		runErr <- err
	}()
	<-running

	h.Disconnect()
	select {
	case <-inputEnded:
	case <-time.After(10 * time.Second):
		t.Fatal("the started process did not see its input end")
	}
	if err := waitDone(t, p); !errors.Is(err, fakehost.ErrDisconnected) {
		t.Errorf("Wait after a lost connection = %v", err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, fakehost.ErrDisconnected) {
		t.Errorf("reading after a lost connection: %v", err)
	}
	err = <-runErr
	if ce, ok := errors.AsType[*remote.CommandError](err); !ok || ce.ExitCode != -1 || !errors.Is(err, fakehost.ErrDisconnected) {
		t.Errorf("a command running when the connection was lost: %v", err)
	}
	if err := p.Close(); !errors.Is(err, fakehost.ErrDisconnected) {
		t.Errorf("Close after a lost connection: %v", err)
	}

	assertAllFail(t, h, fakehost.ErrDisconnected)
	if err := h.Close(); err != nil {
		t.Error(err)
	}
	assertAllFail(t, h, fakehost.ErrClosed)
}

func TestClose(t *testing.T) {
	h := fakehost.New("node-1")
	h.HandleStart(fakehost.Contains("exec cat"), echo)
	h.Handle(fakehost.Exact("true"), fakehost.Reply(""))
	p, err := h.Start(context.Background(), "exec cat")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitDone(t, p); !errors.Is(err, fakehost.ErrClosed) {
		t.Errorf("Wait after Close = %v", err)
	}
	assertAllFail(t, h, fakehost.ErrClosed)
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// assertAllFail checks that every call fails with want, naming the host.
func assertAllFail(t *testing.T, h *fakehost.Host, want error) {
	t.Helper()
	ctx := context.Background()
	_, runErr := h.Run(ctx, "true", nil)
	_, startErr := h.Start(ctx, "exec cat")
	_, readErr := h.ReadFile(ctx, "/etc/x")
	_, statErr := h.Stat(ctx, "/etc/x")
	_, writeErr := h.WriteFile(ctx, remote.File{Path: "/etc/y", Mode: 0o600}, "")
	_, dialErr := h.Dial(ctx, "tcp", "127.0.0.1:2379")
	for name, err := range map[string]error{
		"Run":       runErr,
		"Start":     startErr,
		"ReadFile":  readErr,
		"Stat":      statErr,
		"MkdirAll":  h.MkdirAll(ctx, "/d", 0o700),
		"WriteFile": writeErr,
		"Dial":      dialErr,
	} {
		if !errors.Is(err, want) || !strings.Contains(err.Error(), "node-1") {
			t.Errorf("%s: err = %v, want %v naming the host", name, err, want)
		}
	}
	if _, _, ok := h.File("/etc/y"); ok {
		t.Error("a write on a host that is down wrote")
	}
}

// Hosts are called concurrently by the executor; run with -race.
func TestConcurrentUse(t *testing.T) {
	h := fakehost.New("node-1")
	ctx := context.Background()
	h.Handle(fakehost.Contains("cat"), func(_ context.Context, _ string, stdin io.Reader) ([]byte, error) {
		return io.ReadAll(stdin)
	})
	h.HandleStart(fakehost.Contains("exec cat"), echo)
	h.SetDialer(func(context.Context, string, string) (net.Conn, error) {
		c, s := net.Pipe()
		s.Close()
		return c, nil
	})
	const workers, rounds = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*4)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				p := fmt.Sprintf("/etc/kubernetes/pki/etcd/%d/file-%d", w, i%5)
				data := fmt.Sprintf("%d-%d", w, i)
				if _, err := h.WriteFile(ctx, remote.File{Path: p, Mode: 0o600, Data: []byte(data)}, "/var/lib/etcdadm/backup"); err != nil {
					errs <- err
				}
				if b, err := h.ReadFile(ctx, p); err != nil || string(b) != data {
					errs <- fmt.Errorf("read %s: %q, %v", p, b, err)
				}
				if err := h.MkdirAll(ctx, "/var/lib/etcd", 0o700); err != nil {
					errs <- err
				}
				if out, err := h.Run(ctx, "cat", strings.NewReader(data)); err != nil || string(out) != data {
					errs <- fmt.Errorf("run: %q, %v", out, err)
				}
				if i%10 == 0 {
					pr, err := h.Start(ctx, "exec cat")
					if err != nil {
						errs <- err
						continue
					}
					if err := pr.Close(); err != nil {
						errs <- err
					}
					if c, err := h.Dial(ctx, "tcp", "127.0.0.1:2379"); err != nil {
						errs <- err
					} else {
						c.Close()
					}
				}
				_ = h.Paths()
				_ = h.Calls()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(h.Commands()); n != workers*(rounds+rounds/10) {
		t.Errorf("%d commands recorded, want %d", n, workers*(rounds+rounds/10))
	}
	if fi, err := h.Stat(ctx, "/var/lib/etcd"); err != nil || fi.Mode != fs.ModeDir|0o700 {
		t.Errorf("directory made concurrently: %+v, %v", fi, err)
	}
}
