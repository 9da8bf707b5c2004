package progress

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLines(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, nil)
	l.Info("restarting etcd", HostKey, "e2e0")
	l.Info("stage 1/2: certificates (one at a time)")
	l.With(HostKey, "infra1").Info("connected")
	l.Warn("could not prune old backups in /var/lib/etcdadm/backup: exit status 1", HostKey, "infra2")
	l.Warn("skipping identity file", "file", "/root/.ssh/id_rsa", "err", errors.New("permission denied"))
	l.Error("disk full")
	l.Debug("not shown")
	want := `[e2e0] restarting etcd
stage 1/2: certificates (one at a time)
[infra1] connected
[infra2] warning: could not prune old backups in /var/lib/etcdadm/backup: exit status 1
warning: skipping identity file file=/root/.ssh/id_rsa err="permission denied"
error: disk full
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestAttributes(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, slog.LevelDebug).With(HostKey, "infra0", "attempt", 2)
	l.WithGroup("ssh").Debug("run", "cmd", `echo "a=b"`, "took", 1500*time.Millisecond, "empty", "", slog.Group("g", "x", 1))
	want := `[infra0] run attempt=2 ssh.cmd="echo \"a=b\"" ssh.took=1.5s ssh.empty="" ssh.g.x=1` + "\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestLevels(t *testing.T) {
	var out bytes.Buffer
	level := new(slog.LevelVar)
	l := New(&out, level)
	l.Debug("hidden")
	level.Set(slog.LevelDebug)
	l.Debug("shown")
	if out.String() != "shown\n" {
		t.Errorf("got %q", out.String())
	}
}

func TestQuiet(t *testing.T) {
	var out bytes.Buffer
	level := new(slog.LevelVar)
	q := Quiet(New(&out, level)).With(HostKey, "infra0")
	q.Info("connected")
	q.Debug("run")
	q.Warn("host key recorded")
	if out.String() != "[infra0] warning: host key recorded\n" {
		t.Errorf("quiet at info level printed %q", out.String())
	}
	out.Reset()
	level.Set(slog.LevelDebug)
	q.Info("connected")
	q.Debug("run")
	if out.String() != "[infra0] connected\n[infra0] run\n" {
		t.Errorf("quiet at debug level printed %q", out.String())
	}
}

func TestNilWriterDiscards(t *testing.T) {
	l := New(nil, slog.LevelDebug)
	if l.Enabled(t.Context(), slog.LevelError) {
		t.Error("a logger without a writer is enabled")
	}
	l.Error("nowhere")
}

// Hosts worked on at once never share a line.
func TestConcurrentLinesStayWhole(t *testing.T) {
	var out bytes.Buffer
	l := New(&out, nil)
	var wg sync.WaitGroup
	for _, h := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				l.Info("waiting for the member to be healthy and caught up", HostKey, h)
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	for _, line := range lines {
		if !strings.HasPrefix(line, "[") || !strings.HasSuffix(line, "] waiting for the member to be healthy and caught up") || len(line) != len("[a] waiting for the member to be healthy and caught up") {
			t.Fatalf("mixed line %q", line)
		}
	}
}
