package remote

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestPausableTimer(t *testing.T) {
	fired := make(chan time.Time, 2)
	start := time.Now()
	p := newPausableTimer(100*time.Millisecond, func() { fired <- time.Now() })
	time.Sleep(50 * time.Millisecond)
	resume := p.pause()
	time.Sleep(200 * time.Millisecond) // would have fired without the pause
	select {
	case <-fired:
		t.Fatal("fired while paused")
	default:
	}
	resume()
	resume() // idempotent
	at := <-fired
	if d := at.Sub(start); d < 250*time.Millisecond {
		t.Errorf("fired after %v, want the 100ms plus the 200ms pause", d)
	}
	if p.stop() {
		t.Error("stop after firing reported not fired")
	}

	q := newPausableTimer(50*time.Millisecond, func() { fired <- time.Now() })
	if !q.stop() {
		t.Error("stop before firing reported fired")
	}
	time.Sleep(100 * time.Millisecond)
	if len(fired) != 0 {
		t.Error("stopped timer fired")
	}
}

// A server that accepts and never speaks: each attempt times out, and
// timeouts are retried.
func TestDialHandshakeTimeoutIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			t.Cleanup(func() { c.Close() })
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	start := time.Now()
	_, err = Dial(context.Background(), Config{
		Host:           "silent",
		Address:        "127.0.0.1",
		Port:           port,
		User:           "root",
		KnownHostsFile: t.TempDir() + "/known_hosts",
		SSHConfigFile:  "none",
		AgentSocket:    "none",
		ConnectTimeout: 200 * time.Millisecond,
		Attempts:       2,
		RetryBackoff:   10 * time.Millisecond,
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2 attempts", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v", d)
	}
}

func TestDialRejectsBadConfig(t *testing.T) {
	if _, err := Dial(context.Background(), Config{}); err == nil {
		t.Error("empty config accepted")
	}
	if _, err := Dial(context.Background(), Config{Host: "h", Port: 70000, SSHConfigFile: "none"}); err == nil {
		t.Error("port 70000 accepted")
	}
}
