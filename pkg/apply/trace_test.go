package apply

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

	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/plan"
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

// A private key the run writes never reaches the log, whatever its level.
func TestTraceNeverShowsFileContents(t *testing.T) {
	var out bytes.Buffer
	log := progress.New(&out, slog.LevelDebug)
	root := t.TempDir()
	key := plan.File{Path: filepath.Join(root, "pki/etcd/server.key"), Mode: 0o600, Part: plan.PartCerts, Data: []byte(secretKey)}
	ops := []plan.Op{
		{Kind: plan.OpWrite, Path: key.Path, Change: &plan.Change{File: key, Path: key.Path, Kind: plan.Create}},
		{Kind: plan.OpRun, Command: "true"},
	}
	p := &plan.Plan{Stages: []plan.Stage{{Name: "certificates", Rollout: plan.OneAtATime, Hosts: []plan.HostOps{{Host: "infra0", Ops: ops}}}}}
	c := &config.Cluster{Spec: config.Spec{Hosts: []config.Host{{Name: "infra0", Address: "127.0.0.1"}}}}
	w := newMemWriter("infra0")
	hs := &Hosts{Order: c.Spec.Hosts, T: map[string]remote.Transport{"infra0": WithTrace(w, log.With(progress.HostKey, "infra0"))}}
	x := &Executor{Cluster: c, Hosts: hs, Log: NewLog(log), BackupDir: filepath.Join(root, "backup"), StateDir: filepath.Join(root, "state")}
	if _, err := x.Run(context.Background(), p); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !bytes.Equal(w.files[key.Path], []byte(secretKey)) {
		t.Fatalf("the key was not written: %q", w.files[key.Path])
	}
	for _, want := range []string{
		"[infra0] write path=" + key.Path + " bytes=" + itoa(len(secretKey)) + " mode=0600 took=",
		"[infra0] wrote " + key.Path + " (create)",
		"[infra0] run cmd=true took=",
		"[infra0] ran true",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	for _, line := range strings.Split(secretKey, "\n") {
		if line != "" && strings.Contains(out.String(), line) {
			t.Errorf("the log holds the key's line %q:\n%s", line, out.String())
		}
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
