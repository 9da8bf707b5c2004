package hosts

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/etcdadm-io/etcdadm/pkg/progress"
	"github.com/etcdadm-io/etcdadm/pkg/remote"
)

// memWriter runs commands on this machine and keeps the files it is given
// in memory, so that writes need no root.
type memWriter struct {
	remote.Transport
	mu    sync.Mutex
	files map[string][]byte
}

func newMemWriter(host string) *memWriter {
	return &memWriter{Transport: remote.NewLocal(host, false), files: map[string][]byte{}}
}

func (m *memWriter) WriteFile(_ context.Context, f remote.File, _ string) (remote.WriteResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[f.Path] = f.Data
	return remote.WriteResult{Action: remote.WriteCreated}, nil
}

const secretKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBs3cr3tK3yM4t3r1alThatMustNeverBeLogged\n-----END EC PRIVATE KEY-----\n"

var duration = `\d+(\.\d+)?(µs|ms|s)`

func TestTraceShowsCommandsAndWritesAtDebugLevel(t *testing.T) {
	var out bytes.Buffer
	level := new(slog.LevelVar)
	log := progress.New(&out, level).With(progress.HostKey, "infra0")
	tr := WithTrace(newMemWriter("infra0"), log)
	ctx := context.Background()
	run := func() {
		if _, err := tr.Run(ctx, "echo started\nsleep 0.01", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Run(ctx, "exit 3", nil); err == nil {
			t.Fatal("exit 3 did not fail")
		}
		if _, err := tr.WriteFile(ctx, remote.File{Path: "/etc/kubernetes/pki/etcd/server.key", Mode: 0o600, Data: []byte(secretKey)}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.ReadFile(ctx, filepath.Join(t.TempDir(), "none")); err == nil {
			t.Fatal("read a missing file")
		}
	}

	run()
	if out.Len() != 0 {
		t.Errorf("without debug level, the trace printed:\n%s", out.String())
	}

	level.Set(slog.LevelDebug)
	run()
	for _, want := range []string{
		`^\[infra0\] run cmd="echo started…" lines=2 took=` + duration + `$`,
		`^\[infra0\] run cmd="exit 3" took=` + duration + ` exit=3$`,
		`^\[infra0\] write path=/etc/kubernetes/pki/etcd/server.key bytes=` + itoa(len(secretKey)) + ` mode=0600 took=` + duration + ` action=created$`,
		`^\[infra0\] read path=\S+/none bytes=0 took=` + duration + ` missing=true$`,
	} {
		if !regexp.MustCompile(`(?m)` + want).MatchString(out.String()) {
			t.Errorf("no line matching %s in:\n%s", want, out.String())
		}
	}
	// Only the first line: the second command of the script is not shown.
	if strings.Contains(out.String(), "sleep") {
		t.Errorf("more than the command's first line:\n%s", out.String())
	}
}

func TestShortCommand(t *testing.T) {
	long := strings.Repeat("x", 100)
	for in, want := range map[string]string{
		"systemctl restart kubelet": "systemctl restart kubelet",
		"  set -e\n  cat /etc/x\n":  "set -e…",
		long:                        strings.Repeat("x", 80) + "…",
		"é" + long:                  "é" + strings.Repeat("x", 79) + "…",
	} {
		if got := shortCommand(in); got != want {
			t.Errorf("shortCommand(%q) = %q, want %q", in, got, want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
