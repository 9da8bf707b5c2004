package fakehost_test

import (
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdadm-io/etcdadm/internal/fakehost"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

func TestRunRecordsAndAnswers(t *testing.T) {
	h := fakehost.New("node-1")
	ctx := context.Background()
	h.Handle(fakehost.Contains("systemctl"), fakehost.Reply("active\n"))
	h.Handle(fakehost.Exact("cat"), func(_ context.Context, _ string, stdin io.Reader) ([]byte, error) {
		return io.ReadAll(stdin)
	})
	h.Handle(fakehost.Regexp(regexp.MustCompile(`^systemctl is-active (etcd|kubelet)$`)), fakehost.Reply("inactive\n"))

	if out, err := h.Run(ctx, "systemctl is-active kubelet", nil); err != nil || string(out) != "inactive\n" {
		t.Errorf("the handler registered last does not answer: %q, %v", out, err)
	}
	if out, err := h.Run(ctx, "systemctl daemon-reload", nil); err != nil || string(out) != "active\n" {
		t.Errorf("the broad handler: %q, %v", out, err)
	}
	if out, err := h.Run(ctx, "cat", strings.NewReader("from stdin")); err != nil || string(out) != "from stdin" {
		t.Errorf("stdin: %q, %v", out, err)
	}
	if _, err := h.Run(ctx, "cat", strings.NewReader("")); err != nil {
		t.Error(err)
	}

	want := []fakehost.Call{
		{Cmd: "systemctl is-active kubelet"},
		{Cmd: "systemctl daemon-reload"},
		{Cmd: "cat", Stdin: []byte("from stdin")},
		{Cmd: "cat", Stdin: []byte{}},
	}
	calls := h.Calls()
	if !slices.EqualFunc(calls, want, func(a, b fakehost.Call) bool {
		return a.Cmd == b.Cmd && string(a.Stdin) == string(b.Stdin) && (a.Stdin == nil) == (b.Stdin == nil) && a.Start == b.Start
	}) {
		t.Errorf("calls = %+v, want %+v", calls, want)
	}
	if got := h.Commands(); !slices.Equal(got, []string{"systemctl is-active kubelet", "systemctl daemon-reload", "cat", "cat"}) {
		t.Errorf("commands = %q", got)
	}
	if u := h.Unhandled(); len(u) != 0 {
		t.Errorf("unhandled: %q", u)
	}
}

func TestUnhandledCommandFails(t *testing.T) {
	h := fakehost.New("node-1")
	h.Handle(fakehost.Contains("kubelet"), fakehost.Reply(""))
	_, err := h.Run(context.Background(), "rm -rf /var/lib/etcd", strings.NewReader("input"))
	ce, ok := errors.AsType[*remote.CommandError](err)
	if !ok || !errors.Is(err, fakehost.ErrUnhandled) || ce.ExitCode != -1 {
		t.Fatalf("unhandled command: err = %v, want a CommandError wrapping ErrUnhandled", err)
	}
	if want := `run "rm -rf /var/lib/etcd" on node-1: fakehost: no handler for the command`; err.Error() != want {
		t.Errorf("message = %q, want %q", err, want)
	}
	if _, err := h.Start(context.Background(), "exec cat"); !errors.Is(err, fakehost.ErrUnhandled) {
		t.Errorf("unhandled Start: err = %v", err)
	}
	if u := h.Unhandled(); !slices.Equal(u, []string{"rm -rf /var/lib/etcd", "exec cat"}) {
		t.Errorf("unhandled = %q", u)
	}
	if c := h.Calls(); len(c) != 2 || string(c[0].Stdin) != "input" || !c[1].Start {
		t.Errorf("calls = %+v, want both recorded", c)
	}
}

// A failed command reads as it does from the local transport.
func TestCommandError(t *testing.T) {
	h := fakehost.New("node-1")
	cmd := "echo partial; echo 'boom: no such unit' | tr a-z A-Z >&2; exit 3"
	h.Handle(fakehost.Exact(cmd), func(context.Context, string, io.Reader) ([]byte, error) {
		return []byte("partial\n"), fakehost.Exit(3, "BOOM: NO SUCH UNIT\n")
	})
	out, err := h.Run(context.Background(), cmd, nil)
	ce, ok := errors.AsType[*remote.CommandError](err)
	if !ok {
		t.Fatalf("err = %v, want a *CommandError", err)
	}
	if ce.Host != "node-1" || ce.Cmd != cmd || ce.ExitCode != 3 || strings.TrimSpace(ce.Stderr) != "BOOM: NO SUCH UNIT" {
		t.Errorf("CommandError = %+v", ce)
	}
	if msg := err.Error(); msg != `run "echo partial; echo 'boom: no such unit' | tr a-z A-Z >&2; exit 3" on node-1: exit status 3: BOOM: NO SUCH UNIT` {
		t.Errorf("message = %q", msg)
	}
	if string(out) != "partial\n" {
		t.Errorf("stdout of a failed command = %q", out)
	}

	h.Handle(fakehost.Exact("false"), fakehost.Fail(1, ""))
	if _, err := h.Run(context.Background(), "false", nil); err == nil || err.Error() != `run "false" on node-1: exit status 1` {
		t.Errorf("Fail: %v", err)
	}
	killed := errors.New("signal: killed")
	h.Handle(fakehost.Exact("sleep 1000"), func(context.Context, string, io.Reader) ([]byte, error) { return nil, killed })
	_, err = h.Run(context.Background(), "sleep 1000", nil)
	if ce, ok := errors.AsType[*remote.CommandError](err); !ok || ce.ExitCode != -1 || !errors.Is(err, killed) {
		t.Errorf("a command that did not exit: %v", err)
	}
	for _, code := range []int{0, -1, 256} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Exit(%d) did not panic", code)
				}
			}()
			_ = fakehost.Exit(code, "")
		}()
	}
}

func TestRunHonoursContext(t *testing.T) {
	h := fakehost.New("node-1")
	h.Handle(fakehost.Exact("sleep 30"), func(ctx context.Context, _ string, _ io.Reader) ([]byte, error) {
		<-ctx.Done()
		return nil, fakehost.Exit(1, "interrupted")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := h.Run(ctx, "sleep 30", nil)
	if ce, ok := errors.AsType[*remote.CommandError](err); !ok || ce.ExitCode != -1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled command: err = %v, want a CommandError wrapping the deadline", err)
	}
	if _, err := h.Run(ctx, "sleep 30", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("command after the deadline: %v", err)
	}
}

func TestLatency(t *testing.T) {
	h := fakehost.New("node-1")
	h.Handle(fakehost.Exact("true"), fakehost.Reply(""))
	h.SetLatency(30 * time.Millisecond)
	start := time.Now()
	if _, err := h.Run(context.Background(), "true", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Stat(context.Background(), "/"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("two calls took %v, want at least twice the latency", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if _, err := h.Run(ctx, "true", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a deadline shorter than the latency: %v", err)
	}
}

func TestDial(t *testing.T) {
	h := fakehost.New("node-1")
	ctx := context.Background()
	if _, err := h.Dial(ctx, "tcp", "127.0.0.1:2379"); err == nil || !strings.Contains(err.Error(), "dial 127.0.0.1:2379 from node-1") {
		t.Errorf("Dial without a dialer: %v", err)
	}

	// etcd as the host sees it, played by a loopback server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_, _ = io.WriteString(c, "etcd\n")
			c.Close()
		}
	}()
	routes := map[string]string{"10.0.0.1:2379": ln.Addr().String()}
	h.SetDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
		to, ok := routes[addr]
		if !ok {
			return nil, errors.New("connection refused")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, to)
	})
	conn, err := h.Dial(ctx, "tcp", "10.0.0.1:2379")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if b, err := io.ReadAll(conn); err != nil || string(b) != "etcd\n" {
		t.Errorf("read %q, %v", b, err)
	}
	if _, err := h.Dial(ctx, "tcp", "10.0.0.2:2379"); err == nil || err.Error() != "dial 10.0.0.2:2379 from node-1: connection refused" {
		t.Errorf("Dial to an unrouted address: %v", err)
	}
}
